// The back office (admins only; the server refuses everyone else anyway): departments and users.
import { del, get, patch, post } from "../lib/api.js";
import { departmentName, loadDirectory } from "../lib/directory.js";
import { dateTime } from "../lib/format.js";
import { html, useState } from "../lib/h.js";
import { label, t } from "../lib/i18n.js";
import { notice } from "../lib/notify.js";
import { hasRole } from "../lib/session.js";
import { Dialog, ErrorText, Field } from "../lib/ui.js";
import { FormDialog, Loading, text, useLoad } from "./common.js";

const ROLES = ["admin", "commander", "dept_lead", "responder", "inspector"];
const KINDS = ["county", "department", "team"];

function ParentSelect({ departments, exclude, value = "", name = "parent_id", none = t("adm.no_parent") }) {
  return html`<select name=${name}>
    <option value="" selected=${!value}>${none}</option>
    ${departments.filter((d) => d.id !== exclude).map((d) => html`<option value=${d.id} selected=${d.id === value}>${d.name}</option>`)}
  </select>`;
}

function RoleChecks({ checked = [] }) {
  return html`<fieldset class="roles"><legend>${t("adm.u_roles")}</legend>
    ${ROLES.map((r) => html`<label key=${r}><input type="checkbox" name="roles" value=${r} defaultChecked=${checked.includes(r)} /> ${label("role", r)}</label>`)}
  </fieldset>`;
}

function DevicesDialog({ user, onClose }) {
  const [error, setError] = useState(null);
  const { data, error: loadError, reload } = useLoad(() => get(`/api/admin/users/${encodeURIComponent(user.id)}/devices`), [user.id]);
  return html`<${Dialog} title=${t("adm.devices_of", { name: user.display_name })} onClose=${onClose} wide>
    ${!data ? html`<${Loading} error=${loadError} />` : !data.devices.length ? html`<p class="muted">${t("adm.no_devices")}</p>` : html`
    <table class="list"><thead><tr><th scope="col">${t("ppl.devices")}</th><th scope="col">${t("adm.d_kind")}</th>
      <th scope="col">${t("adm.last_seen")}</th><th scope="col">${t("adm.state")}</th></tr></thead>
    <tbody>${data.devices.map((d) => html`<tr key=${d.id}><td>${d.name}</td><td>${label("device", d.kind)}</td>
      <td>${dateTime(d.last_seen_at)}</td>
      <td>${d.revoked_at ? t("adm.revoked") : html`<button type="button" class="small danger"
        aria-label=${`${t("adm.sign_out")}：${d.name}`}
        onClick=${() => del(`/api/admin/devices/${encodeURIComponent(d.id)}`).then(reload, setError)}>${t("adm.sign_out")}</button>`}</td></tr>`)}
    </tbody></table>`}
    <${ErrorText} error=${error} />
  </${Dialog}>`;
}

export function Admin() {
  const isAdmin = hasRole("admin");
  const [dialog, setDialog] = useState(null);
  const deps = useLoad(() => (isAdmin ? get("/api/departments") : Promise.resolve(null)), [isAdmin]);
  const users = useLoad(() => (isAdmin ? get("/api/admin/users?limit=500") : Promise.resolve(null)), [isAdmin]);
  const [error, setError] = useState(null);
  if (!isAdmin) {
    return html`<section class="stack"><h1 id="screen-title">${t("adm.title")}</h1>
      <p class="error refusal" role="alert">${t("adm.refused")}</p></section>`;
  }
  const departments = deps.data ? deps.data.departments : [];
  function changed() {
    deps.reload();
    users.reload();
    loadDirectory().catch(() => {});
  }
  const close = () => setDialog(null);
  const done = (p) => p.then(() => { notice(t("adm.saved")); changed(); }, setError);
  return html`<section class="stack">
    <h1 id="screen-title">${t("adm.title")}</h1>
    <${ErrorText} error=${error} />
    <section class="panel" aria-labelledby="adm-deps">
      <div class="row spread"><h2 id="adm-deps">${t("adm.departments")}</h2>
        <button type="button" class="primary" onClick=${() => setDialog({ kind: "newdep" })}>${t("adm.new_department")}</button></div>
      ${!deps.data ? html`<${Loading} error=${deps.error} />` : html`<table class="list">
        <thead><tr><th scope="col">${t("adm.d_name")}</th><th scope="col">${t("adm.d_kind")}</th><th scope="col">${t("adm.d_parent")}</th><th scope="col"><span class="sr-only">${t("inc.actions")}</span></th></tr></thead>
        <tbody>${departments.map((d) => html`<tr key=${d.id}>
          <td>${d.name}</td><td>${t(`adm.kind.${d.kind}`)}</td><td>${d.parent_id ? departmentName(d.parent_id) : "—"}</td>
          <td><div class="row tight">
            <button type="button" class="small" aria-label=${`${t("adm.rename")}：${d.name}`} onClick=${() => setDialog({ kind: "rename", d })}>${t("adm.rename")}</button>
            <button type="button" class="small" aria-label=${`${t("adm.move")}：${d.name}`} onClick=${() => setDialog({ kind: "move", d })}>${t("adm.move")}</button>
            <button type="button" class="small danger" aria-label=${`${t("adm.delete")}：${d.name}`} onClick=${() => setDialog({ kind: "delete", d })}>${t("adm.delete")}</button>
          </div></td></tr>`)}</tbody></table>`}
    </section>
    <section class="panel" aria-labelledby="adm-users">
      <div class="row spread"><h2 id="adm-users">${t("adm.users")}</h2>
        <button type="button" class="primary" onClick=${() => setDialog({ kind: "newuser" })}>${t("adm.new_user")}</button></div>
      ${!users.data ? html`<${Loading} error=${users.error} />` : html`<table class="list">
        <thead><tr><th scope="col">${t("adm.u_username")}</th><th scope="col">${t("adm.u_display")}</th><th scope="col">${t("adm.u_department")}</th>
          <th scope="col">${t("adm.u_roles")}</th><th scope="col">${t("adm.state")}</th><th scope="col"><span class="sr-only">${t("inc.actions")}</span></th></tr></thead>
        <tbody>${users.data.users.map((u) => html`<tr key=${u.id}>
          <td>${u.username}</td><td>${u.display_name}</td><td>${departmentName(u.department_id)}</td>
          <td>${u.roles.map((r) => label("role", r)).join("、")}</td>
          <td>${u.disabled ? t("adm.disabled") : t("adm.active")}</td>
          <td><div class="row tight">
            <button type="button" class="small" aria-label=${`${t("adm.edit")}：${u.username}`} onClick=${() => setDialog({ kind: "edituser", u })}>${t("adm.edit")}</button>
            <button type="button" class="small" aria-label=${`${t("adm.devices")}：${u.username}`} onClick=${() => setDialog({ kind: "devices", u })}>${t("adm.devices")}</button>
            <button type="button" class=${`small${u.disabled ? "" : " danger"}`} aria-label=${`${u.disabled ? t("adm.enable") : t("adm.disable")}：${u.username}`}
              onClick=${() => done(patch(`/api/admin/users/${encodeURIComponent(u.id)}`, { disabled: !u.disabled }))}>${u.disabled ? t("adm.enable") : t("adm.disable")}</button>
          </div></td></tr>`)}</tbody></table>`}
    </section>
    ${dialog && dialog.kind === "newdep" && html`<${FormDialog} title=${t("adm.new_department")} submitLabel=${t("common.save")} onClose=${close}
      onSubmit=${async (f) => { await post("/api/admin/departments", { name: text(f, "name"), kind: text(f, "kind"), parent_id: text(f, "parent_id") || null }); changed(); }}>
      <${Field} label=${t("adm.d_name")}><input autofocus name="name" required maxlength="100" autocomplete="off" /></${Field}>
      <${Field} label=${t("adm.d_kind")}><select name="kind">${KINDS.map((k) => html`<option value=${k} selected=${k === "department"}>${t(`adm.kind.${k}`)}</option>`)}</select></${Field}>
      <${Field} label=${t("adm.d_parent")}><${ParentSelect} departments=${departments} value=${(departments.find((d) => !d.parent_id) || {}).id || ""} /></${Field}>
    </${FormDialog}>`}
    ${dialog && dialog.kind === "rename" && html`<${FormDialog} title=${`${t("adm.rename")}：${dialog.d.name}`} submitLabel=${t("common.save")} onClose=${close}
      onSubmit=${async (f) => { await patch(`/api/admin/departments/${encodeURIComponent(dialog.d.id)}`, { name: text(f, "name") }); changed(); }}>
      <${Field} label=${t("adm.d_name")}><input name="name" required maxlength="100" defaultValue=${dialog.d.name} /></${Field}>
    </${FormDialog}>`}
    ${dialog && dialog.kind === "move" && html`<${FormDialog} title=${`${t("adm.move")}：${dialog.d.name}`} submitLabel=${t("common.save")} onClose=${close}
      onSubmit=${async (f) => {
        const parent = text(f, "parent_id");
        await patch(`/api/admin/departments/${encodeURIComponent(dialog.d.id)}`, parent ? { parent_id: parent } : { make_root: true });
        changed();
      }}>
      <${Field} label=${t("adm.d_parent")}><${ParentSelect} departments=${departments} exclude=${dialog.d.id} value=${dialog.d.parent_id || ""} /></${Field}>
    </${FormDialog}>`}
    ${dialog && dialog.kind === "delete" && html`<${FormDialog} title=${`${t("adm.delete")}：${dialog.d.name}`} submitLabel=${t("adm.delete")} danger onClose=${close}
      onSubmit=${async () => { await del(`/api/admin/departments/${encodeURIComponent(dialog.d.id)}`); changed(); }}>
      <p>${t("adm.confirm_delete", { name: dialog.d.name })}</p>
    </${FormDialog}>`}
    ${dialog && dialog.kind === "newuser" && html`<${FormDialog} title=${t("adm.new_user")} submitLabel=${t("common.save")} onClose=${close} wide
      onSubmit=${async (f) => {
        await post("/api/admin/users", { username: text(f, "username"), display_name: text(f, "display_name"),
          password: String(f.get("password")), department_id: text(f, "department_id") || null, title: text(f, "title"),
          roles: f.getAll("roles").map(String) });
        changed();
      }}>
      <div class="two">
        <${Field} label=${t("adm.u_username")}><input autofocus name="username" required maxlength="64" pattern="[a-z0-9][a-z0-9_.\\-]*" autocomplete="off" /></${Field}>
        <${Field} label=${t("adm.u_display")}><input name="display_name" required maxlength="100" autocomplete="off" /></${Field}>
        <${Field} label=${t("adm.u_password")}><input name="password" type="password" required maxlength="256" autocomplete="new-password" /></${Field}>
        <${Field} label=${t("adm.u_title")}><input name="title" maxlength="200" autocomplete="off" /></${Field}>
      </div>
      <${Field} label=${t("adm.u_department")}><${ParentSelect} name="department_id" departments=${departments} none=${t("ppl.no_department")} /></${Field}>
      <${RoleChecks} />
    </${FormDialog}>`}
    ${dialog && dialog.kind === "edituser" && html`<${FormDialog} title=${t("adm.edit_user", { name: dialog.u.display_name })} submitLabel=${t("common.save")} onClose=${close}
      onSubmit=${async (f) => {
        const dep = text(f, "department_id");
        await patch(`/api/admin/users/${encodeURIComponent(dialog.u.id)}`, { display_name: text(f, "display_name"), title: text(f, "title"),
          roles: f.getAll("roles").map(String), ...(dep ? { department_id: dep } : { clear_department: true }) });
        changed();
      }}>
      <${Field} label=${t("adm.u_display")}><input name="display_name" required maxlength="100" defaultValue=${dialog.u.display_name} /></${Field}>
      <${Field} label=${t("adm.u_title")}><input name="title" maxlength="200" defaultValue=${dialog.u.title || ""} /></${Field}>
      <${Field} label=${t("adm.u_department")}><${ParentSelect} name="department_id" departments=${departments} value=${dialog.u.department_id || ""} none=${t("ppl.no_department")} /></${Field}>
      <${RoleChecks} checked=${dialog.u.roles} />
    </${FormDialog}>`}
    ${dialog && dialog.kind === "devices" && html`<${DevicesDialog} user=${dialog.u} onClose=${close} />`}
  </section>`;
}
