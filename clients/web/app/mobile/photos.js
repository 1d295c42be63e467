// Photos from the phone's camera, uploaded at once with tus (resumable: a dropped network only pauses
// them). Forms reference the finished uploads by file id.
import { html, useEffect, useRef } from "../lib/h.js";
import { t } from "../lib/i18n.js";
import { uploadFile } from "../lib/upload.js";

let seq = 0;

/** Photos still uploading (a form waits for them). */
export function uploading(photos) {
  return photos.some((p) => !p.file_id && !p.error);
}

export function photoIds(photos) {
  return photos.filter((p) => p.file_id).map((p) => p.file_id);
}

/** `photos` / `setPhotos` belong to the form; each photo is {key, name, url, percent, state, file_id?, error?}. */
export function PhotoPicker({ photos, setPhotos, id }) {
  const urls = useRef(new Set());
  useEffect(() => () => { for (const url of urls.current) URL.revokeObjectURL(url); }, []);

  function pick(ev) {
    const chosen = [...ev.currentTarget.files];
    ev.currentTarget.value = "";
    for (const file of chosen) {
      seq += 1;
      const key = `p${seq}`;
      const url = URL.createObjectURL(file);
      urls.current.add(url);
      setPhotos((list) => [...list, { key, name: file.name || "photo.jpg", url, percent: 0, state: "uploading" }]);
      const patch = (p) => setPhotos((list) => list.map((x) => (x.key === key ? { ...x, ...p } : x)));
      uploadFile(file, {
        onProgress: (sent, total) => patch({ percent: total ? Math.round((100 * sent) / total) : 0 }),
        onState: (state) => patch({ state }),
      }).then((done) => patch({ file_id: done.file_id, percent: 100, state: "done" }),
        (err) => patch({ error: (err && err.message) || String(err), state: "error" }));
    }
  }

  function remove(key) {
    setPhotos((list) => list.filter((p) => p.key !== key));
  }

  function status(p) {
    if (p.error) return t("upload.failed", { message: p.error });
    if (p.file_id) return t("upload.done");
    if (p.state === "waiting") return t("m.photos.waiting");
    return t("upload.progress", { percent: p.percent });
  }

  return html`<div class="photos">
    <label class="button camera" for=${id}>${t("m.photos.take")}</label>
    <input id=${id} class="sr-only" type="file" accept="image/*" capture="environment" multiple onChange=${pick} />
    ${photos.length > 0 && html`<ul class="photo-list" aria-label=${t("m.photos.label")}>
      ${photos.map((p) => html`<li key=${p.key} class="photo">
        <img src=${p.url} alt=${p.name} />
        <div class="photo-info">
          <span class="photo-name">${p.name}</span>
          <progress max="100" value=${p.percent} aria-label=${p.name}></progress>
          <span class=${p.error ? "error" : "muted"} role="status">${status(p)}</span>
        </div>
        <button type="button" class="icon" aria-label=${t("m.photos.remove", { name: p.name })}
          onClick=${() => remove(p.key)}>×</button>
      </li>`)}
    </ul>`}
  </div>`;
}
