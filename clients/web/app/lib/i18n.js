// Strings in zh-CN first, English second. Each face (console, mobile, call) adds its own strings
// with addStrings(); shared words (states, roles, actions) live in strings.js.
import { createStore } from "./store.js";

export const LANGS = ["zh-CN", "en"];
const KEY = "muster.lang";
const tables = { "zh-CN": {}, en: {} };

function initialLang() {
  try {
    const saved = localStorage.getItem(KEY);
    if (LANGS.includes(saved)) return saved;
  } catch { /* storage may be unavailable */ }
  return "zh-CN";
}

export const lang = createStore(initialLang());
document.documentElement.lang = lang.get();

export function setLang(next) {
  if (!LANGS.includes(next)) return;
  try { localStorage.setItem(KEY, next); } catch { /* ignore */ }
  document.documentElement.lang = next;
  lang.set(next);
}

/** Merge `{ "zh-CN": {key: text}, en: {key: text} }` into the tables. */
export function addStrings(strings) {
  for (const code of LANGS) Object.assign(tables[code], strings[code] || {});
}

/** The text for `key` in the current language, `{name}` placeholders filled from `params`. */
export function t(key, params) {
  const current = lang.get();
  let text = tables[current][key] ?? tables["zh-CN"][key] ?? tables.en[key] ?? key;
  if (params) text = text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
  return text;
}

/** A label from a table of codes (`state.reported`), falling back to the code itself. */
export function label(group, code) {
  const key = `${group}.${code}`;
  const text = t(key);
  return text === key ? String(code) : text;
}
