// People and devices: everyone by department, with each person's presence per device.
import { departmentName, directory } from "../lib/directory.js";
import { html } from "../lib/h.js";
import { label, t } from "../lib/i18n.js";
import { useStore } from "../lib/store.js";
import { Loading, presence, usePresence } from "./common.js";

export function People() {
  const dir = useStore(directory);
  const states = useStore(presence);
  const users = [...dir.users.values()];
  usePresence(users.map((u) => u.id));
  if (!dir.loaded) return html`<section><h1 id="screen-title">${t("ppl.title")}</h1><${Loading} /></section>`;
  const groups = [...dir.departments.values()].map((d) => [d.id, users.filter((u) => u.department_id === d.id)]);
  const loose = users.filter((u) => !u.department_id || !dir.departments.has(u.department_id));
  if (loose.length) groups.push(["", loose]);
  return html`<section class="stack">
    <h1 id="screen-title">${t("ppl.title")}</h1>
    ${groups.filter(([, list]) => list.length).map(([dep, list]) => html`<section class="panel" key=${dep || "none"}
        aria-labelledby=${`dep-${dep || "none"}`}>
      <h2 id=${`dep-${dep || "none"}`}>${dep ? departmentName(dep) : t("ppl.no_department")}</h2>
      <table class="list">
        <thead><tr><th scope="col">${t("ppl.name")}</th><th scope="col">${t("ppl.post")}</th><th scope="col">${t("ppl.roles")}</th>
          <th scope="col">${t("ppl.presence")}</th><th scope="col">${t("ppl.devices")}</th></tr></thead>
        <tbody>${list.map((u) => {
          const p = states.get(u.id) || { state: "offline", devices: [] };
          return html`<tr key=${u.id}>
            <td>${u.display_name}</td><td>${u.title || ""}</td>
            <td>${u.roles.map((r) => label("role", r)).join("、")}</td>
            <td><span class=${`presence presence-${p.state}`}>${label("presence", p.state)}</span></td>
            <td>${p.devices && p.devices.length ? html`<ul class="inline">${p.devices.map((d) => html`<li key=${d.device_id}>
              ${label("device", d.kind)}：<span class=${`presence presence-${d.state}`}>${label("presence", d.state)}</span></li>`)}</ul>`
              : html`<span class="muted">${t("ppl.no_devices")}</span>`}</td>
          </tr>`;
        })}</tbody>
      </table>
    </section>`)}
  </section>`;
}
