// Resumable uploads with tus-js-client (loaded by the page as /vendor/tus.min.js): a photo taken on
// a weak network resumes where the server's offset says, after a drop or even a reload.
import { accessToken } from "./session.js";

const RETRIES = [0, 1000, 3000, 5000, 10000, 20000, 30000, 30000, 60000, 60000, 60000, 60000];

/**
 * Upload a File/Blob. Resolves to {file_id, name, size, type}. `onProgress(sent, total)`, `onState(state)`
 * ("uploading" | "waiting" for the network). `roomId` posts the finished file to that room.
 */
export function uploadFile(file, { roomId, onProgress, onState, chunkSize = 512 * 1024 } = {}) {
  const tus = window.tus;
  if (!tus) return Promise.reject(new Error("tus-js-client is not loaded"));
  return new Promise((resolve, reject) => {
    const metadata = { filename: file.name || "photo.jpg", filetype: file.type || "application/octet-stream" };
    if (roomId) metadata.room_id = roomId;
    const upload = new tus.Upload(file, {
      endpoint: "/api/uploads",
      metadata,
      chunkSize,
      retryDelays: RETRIES,
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      async onBeforeRequest(req) {
        req.setHeader("Authorization", `Bearer ${await accessToken()}`);
      },
      onShouldRetry(err, attempt) {
        const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
        if (onState) onState("waiting");
        return status === 0 || status === 401 || status === 423 || status === 409 || status >= 500
          || attempt < 2;
      },
      onProgress(sent, total) {
        if (onState) onState("uploading");
        if (onProgress) onProgress(sent, total);
      },
      onSuccess({ lastResponse }) {
        const fileId = lastResponse.getHeader("Muster-File-Id") || upload.url.split("/").pop();
        resolve({ file_id: fileId, name: metadata.filename, size: file.size, type: metadata.filetype });
      },
      onError(err) { reject(err); },
    });
    upload.findPreviousUploads().then((previous) => {
      if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
      upload.start();
    }, () => upload.start());
  });
}
