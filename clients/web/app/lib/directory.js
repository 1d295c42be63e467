// Names of people and departments, loaded once per session and refreshed on demand.
import { get } from "./api.js";
import { createStore } from "./store.js";

export const directory = createStore({ users: new Map(), departments: new Map(), loaded: false });

export async function loadDirectory() {
  const [users, departments] = await Promise.all([get("/api/users?limit=500"), get("/api/departments")]);
  directory.set({
    users: new Map(users.users.map((u) => [u.id, u])),
    departments: new Map(departments.departments.map((d) => [d.id, d])),
    loaded: true,
  });
}

export function userName(id) {
  if (!id) return "";
  const u = directory.get().users.get(id);
  return u ? u.display_name : id;
}

export function departmentName(id) {
  if (!id) return "";
  const d = directory.get().departments.get(id);
  return d ? d.name : id;
}
