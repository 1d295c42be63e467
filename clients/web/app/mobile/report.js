// Report an incident (上报) from the field: the phone's location, photos, queued so it works offline.
import { html, useState } from "../lib/h.js";
import { label, t } from "../lib/i18n.js";
import { notice } from "../lib/notify.js";
import { enqueue } from "../lib/outbox.js";
import { conn } from "../lib/socket.js";
import { Field } from "../lib/ui.js";
import { PhotoPicker, photoIds, uploading } from "./photos.js";

// The server's default types (workflows.incident_types); it offers no route listing a county's own.
const TYPES = ["flood", "fire", "chemical", "collapse", "traffic", "geological", "other"];
const LEVELS = [4, 3, 2, 1];

export function ReportScreen() {
  const [title, setTitle] = useState("");
  const [type, setType] = useState("flood");
  const [level, setLevel] = useState("4");
  const [description, setDescription] = useState("");
  const [address, setAddress] = useState("");
  const [position, setPosition] = useState(null); // {latitude, longitude, accuracy}
  const [locating, setLocating] = useState(false);
  const [geoError, setGeoError] = useState("");
  const [photos, setPhotos] = useState([]);
  const [error, setError] = useState("");

  function locate() {
    if (!navigator.geolocation) { setGeoError(t("m.report.no_geo", { message: "unsupported" })); return; }
    setLocating(true);
    setGeoError("");
    navigator.geolocation.getCurrentPosition((pos) => {
      setLocating(false);
      setPosition({ latitude: pos.coords.latitude, longitude: pos.coords.longitude,
        accuracy: Math.round(pos.coords.accuracy || 0) });
    }, (err) => {
      setLocating(false);
      setGeoError(t("m.report.no_geo", { message: err.message || String(err.code) }));
    }, { enableHighAccuracy: true, timeout: 15_000, maximumAge: 60_000 });
  }

  async function submit(ev) {
    ev.preventDefault();
    if (uploading(photos)) { setError(t("m.photos.wait")); return; }
    setError("");
    const payload = { title: title.trim(), type, level: Number(level), description: description.trim(),
      address: address.trim(), attachments: photoIds(photos) };
    if (position) { payload.latitude = position.latitude; payload.longitude = position.longitude; }
    await enqueue("incident", payload);
    notice(conn.get() === "online" ? t("m.report.sent") : t("m.report.queued"));
    setTitle(""); setDescription(""); setAddress(""); setPosition(null); setPhotos([]);
  }

  return html`<section class="screen" aria-labelledby="report-title">
    <div class="screen-head"><h1 id="report-title">${t("m.report.title")}</h1></div>
    <form class="stack report-form" onSubmit=${submit}>
      <${Field} label=${t("m.report.name")}>
        <input required maxlength="200" value=${title} onInput=${(e) => setTitle(e.currentTarget.value)} />
      </${Field}>
      <div class="two">
        <${Field} label=${t("m.report.type")}>
          <select value=${type} onChange=${(e) => setType(e.currentTarget.value)}>
            ${TYPES.map((code) => html`<option key=${code} value=${code}>${label("incident_type", code)}</option>`)}
          </select>
        </${Field}>
        <${Field} label=${t("m.report.level")}>
          <select value=${level} onChange=${(e) => setLevel(e.currentTarget.value)}>
            ${LEVELS.map((n) => html`<option key=${n} value=${String(n)}>${label("level", n)}</option>`)}
          </select>
        </${Field}>
      </div>
      <${Field} label=${t("m.report.description")}>
        <textarea maxlength="10000" value=${description} onInput=${(e) => setDescription(e.currentTarget.value)}></textarea>
      </${Field}>
      <fieldset class="location">
        <legend>${t("m.report.location")}</legend>
        <button type="button" onClick=${locate} disabled=${locating}>${t("m.report.locate")}</button>
        <p role="status" class="coords">${locating ? t("m.report.locating") : position ? t("m.report.coords", {
          lat: position.latitude.toFixed(5), lng: position.longitude.toFixed(5), acc: position.accuracy }) : ""}</p>
        ${geoError && html`<p class="error" role="alert">${geoError}</p>`}
        <${Field} label=${t("m.report.address")} hint=${t("m.report.address_hint")}>
          <input maxlength="500" value=${address} onInput=${(e) => setAddress(e.currentTarget.value)} />
        </${Field}>
      </fieldset>
      <${PhotoPicker} id="report-photos" photos=${photos} setPhotos=${setPhotos} />
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="submit" class="primary wide">${t("m.tab.report")}</button>
    </form>
  </section>`;
}
