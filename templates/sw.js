// The service worker (rendered by the site stage to sw.js at the site's root, so that its
// scope is the whole site). A first visit caches the app shell and the default model; later
// visits work without a network.
//   - pages and models: network first, the cached copy when the network fails (their URLs do
//     not change between deploys, so a new deploy shows on the next visit);
//   - assets/: cache first (their names carry a hash of their content: a URL never changes
//     meaning, and a new deploy references new names).
// VERSION changes with every change to what is precached, so the browser installs the new
// worker and the old caches go.
const VERSION = {{ version | tojson }};
const PRECACHE = {{ precache | tojson }};
// one origin may host several sites (user.github.io/<repo>/): each keeps to its own caches
const PREFIX = `mnist-webgpu:${self.registration.scope}:`;
const CACHE = PREFIX + VERSION;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(PRECACHE.map((path) => new Request(new URL(path, self.registration.scope), { cache: "reload" }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith(PREFIX) && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) cache.put(request, response.clone());
    return response;
  } catch (err) {
    const cached = await cache.match(request, { ignoreSearch: request.mode === "navigate" });
    if (cached) return cached;
    throw err;
  }
}

async function cacheFirst(request) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(request);
  if (cached) return cached;
  const response = await fetch(request);
  if (response.ok) cache.put(request, response.clone());
  return response;
}

self.addEventListener("fetch", (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin || !url.href.startsWith(self.registration.scope)) return;
  const path = url.href.slice(self.registration.scope.length);
  event.respondWith(path.startsWith("assets/") ? cacheFirst(request) : networkFirst(request));
});
