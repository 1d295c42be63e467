// The responder view's service worker (registered by mobile/main.js with scope /m): the app shell
// (/m, /app/**, /vendor/**) is kept so the view opens without a network. The page: network first, the
// cached copy when offline. Static files: the cached copy at once, refreshed in the background.
// Never cached: the API, the socket, uploads and file downloads (all under /api/ or /socket.io/).
const CACHE = "muster-m-v1";
const SHELL = [
  "/m",
  "/manifest.webmanifest",
  "/app/icon.svg",
  "/app/styles/base.css",
  "/app/styles/mobile.css",
  "/vendor/tus.min.js",
  "/vendor/preact-htm.js",
  "/vendor/socket.io.esm.min.js",
  "/app/lib/api.js", "/app/lib/chat.js", "/app/lib/chatview.js", "/app/lib/directory.js", "/app/lib/format.js",
  "/app/lib/h.js", "/app/lib/i18n.js", "/app/lib/notify.js", "/app/lib/outbox.js", "/app/lib/session.js",
  "/app/lib/socket.js", "/app/lib/store.js", "/app/lib/strings.js", "/app/lib/ui.js", "/app/lib/upload.js",
  "/app/mobile/main.js", "/app/mobile/strings.js", "/app/mobile/chat.js", "/app/mobile/pending.js",
  "/app/mobile/photos.js", "/app/mobile/report.js", "/app/mobile/tasks.js",
];

self.addEventListener("install", (event) => {
  // One missing file must not keep the rest out of the cache.
  event.waitUntil(caches.open(CACHE)
    .then((cache) => Promise.all(SHELL.map((url) => cache.add(new Request(url, { cache: "no-cache" })).catch(() => {}))))
    .then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith("muster-m-") && k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

function isShellFile(path) {
  return path.startsWith("/app/") || path.startsWith("/vendor/") || path === "/manifest.webmanifest";
}

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put("/m", response.clone());
    return response;
  } catch (err) {
    const cached = await cache.match("/m");
    if (cached) return cached;
    throw err;
  }
}

async function staleWhileRevalidate(event) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(event.request);
  const fresh = fetch(event.request).then(async (response) => {
    if (response.ok) await cache.put(event.request, response.clone());
    return response;
  });
  if (cached) {
    event.waitUntil(fresh.catch(() => {}));
    return cached;
  }
  return fresh;
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  const path = url.pathname;
  if (path.startsWith("/api/") || path.startsWith("/socket.io/")) return; // live data: never from a cache
  if (request.mode === "navigate") {
    if (path === "/m") event.respondWith(networkFirst(request));
    return;
  }
  if (isShellFile(path)) event.respondWith(staleWhileRevalidate(event));
});
