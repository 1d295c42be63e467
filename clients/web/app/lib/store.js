// A tiny observable value and a hook to follow it from components.
import { useEffect, useState } from "./h.js";

export function createStore(initial) {
  let value = initial;
  const listeners = new Set();
  return {
    get: () => value,
    set(next) {
      value = typeof next === "function" ? next(value) : next;
      for (const fn of [...listeners]) fn(value);
    },
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
}

/** Re-render when the store changes; `select` picks the part the component needs. */
export function useStore(store, select = (v) => v) {
  const [, force] = useState(0);
  useEffect(() => store.subscribe(() => force((n) => n + 1)), [store]);
  return select(store.get());
}

/** A small event emitter (socket events fan out to several screens). */
export function createEmitter() {
  const map = new Map();
  return {
    on(name, fn) {
      if (!map.has(name)) map.set(name, new Set());
      map.get(name).add(fn);
      return () => map.get(name)?.delete(fn);
    },
    emit(name, data) {
      for (const fn of [...(map.get(name) || [])]) {
        try { fn(data); } catch (err) { console.error(`listener of ${name} failed`, err); }
      }
    },
  };
}

/** Listen to an emitter while a component is mounted. */
export function useEvent(emitter, name, fn, deps = []) {
  useEffect(() => emitter.on(name, fn), [emitter, name, ...deps]);
}
