// In-page half of tests/e2e/test_tus_browser.py, loaded after tus-js-client's dist/tus.min.js into a page
// served from Muster's origin. It builds the same file every time (seeded PRNG), hashes it with
// crypto.subtle, and uploads it with tus-js-client, reporting what happened to the Python test.
(() => {
  "use strict";

  const FILE_NAME = "muster-e2e-upload.bin";
  const FILE_TYPE = "application/octet-stream";
  // A fixed lastModified keeps tus-js-client's fingerprint (name, type, size, lastModified, endpoint)
  // equal across page loads, which is what lets findPreviousUploads() find the interrupted upload.
  const LAST_MODIFIED = Date.UTC(2024, 0, 1);

  const $ = (id) => document.getElementById(id);

  function note(text) {
    const line = `${new Date().toISOString().slice(11, 23)} ${text}`;
    console.log(line);
    const log = $("log");
    if (log) log.textContent += `${line}\n`;
  }

  function show(status, sent, total) {
    if ($("status")) $("status").textContent = status;
    if ($("progress") && total) $("progress").value = (100 * sent) / total;
    if ($("bytes") && total) $("bytes").textContent = `${sent} / ${total} bytes`;
  }

  // xorshift32: the same seed gives the same bytes in every browser and run.
  function makeFile(size, seed) {
    const words = new Uint32Array(Math.ceil(size / 4));
    let x = seed >>> 0 || 1;
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13; x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5; x >>>= 0;
      words[i] = x;
    }
    const bytes = new Uint8Array(words.buffer, 0, size);
    return new File([bytes], FILE_NAME, { type: FILE_TYPE, lastModified: LAST_MODIFIED });
  }

  async function sha256Hex(blob) {
    const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // Upload the seeded file. With `cutAt` (a fraction), the first PATCH at or past that fraction of the
  // file waits for window.cutNetwork() (exposed by the test: it takes the browser context offline) and
  // is then sent into the dead network. With `resume`, the upload continues the one that
  // findPreviousUploads() finds in localStorage. Resolves, never rejects, with what happened.
  async function upload({ token, size, seed, chunkSize, cutAt = null, resume = false }) {
    const file = makeFile(size, seed);
    const sha256 = await sha256Hex(file);
    note(`file ${file.name}: ${file.size} bytes, sha256 ${sha256}`);
    let cut = false;
    let accepted = 0;
    let upload = null;
    const done = new Promise((resolve) => {
      upload = new tus.Upload(file, {
        endpoint: "/api/uploads",
        headers: { Authorization: `Bearer ${token}` },
        metadata: { filename: file.name, filetype: file.type },
        chunkSize,
        retryDelays: [0, 300, 1000],
        async onBeforeRequest(req) {
          if (cutAt === null || cut || req.getMethod() !== "PATCH") return;
          const offset = Number(req.getHeader("Upload-Offset"));
          if (offset >= cutAt * size) {
            cut = true;
            note(`cutting the network before the PATCH at offset ${offset}`);
            await window.cutNetwork();
            show(`offline (navigator.onLine=${navigator.onLine})`, accepted, size);
          }
        },
        onAfterResponse(req, res) {
          if (req.getMethod() === "HEAD") note(`HEAD: the server has ${res.getHeader("Upload-Offset")} bytes`);
        },
        onProgress(sent, total) {
          show(resume ? "resuming" : "uploading", sent, total);
        },
        onChunkComplete(_chunk, bytesAccepted, total) {
          accepted = bytesAccepted;
          show(resume ? "resuming" : "uploading", bytesAccepted, total);
        },
        onError(error) {
          note(`upload failed: ${error}`);
          show(`failed: ${String(error).slice(0, 120)}`, accepted, size);
          resolve({ outcome: "error", error: String(error), sha256, accepted, url: upload.url,
                    online: navigator.onLine, fileId: null });
        },
        onSuccess({ lastResponse }) {
          const fileId = lastResponse.getHeader("Muster-File-Id");
          note(`upload finished at ${upload.url}, file ${fileId}`);
          show(`finished: file ${fileId}`, size, size);
          resolve({ outcome: "success", error: null, sha256, accepted: size, url: upload.url,
                    online: navigator.onLine, fileId });
        },
      });
    });
    let previous = [];
    if (resume) {
      previous = await upload.findPreviousUploads();
      note(`previous uploads in localStorage: ${previous.length}`);
      if (previous.length === 0) {
        return { outcome: "no-previous-upload", error: null, sha256, accepted: 0, url: null,
                 online: navigator.onLine, fileId: null, previous: 0 };
      }
      upload.resumeFromPreviousUpload(previous[0]);
    }
    note(resume ? `resuming ${previous[0].uploadUrl}` : "starting a new upload");
    upload.start();
    return { ...(await done), previous: previous.length };
  }

  window.tusTest = { makeFile, sha256Hex, upload };
})();
