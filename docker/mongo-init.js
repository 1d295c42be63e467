// One-shot set-up of the MongoDB replica set for Muster (docker/compose.yaml, service mongo-init).
// Runs in mongo1's network namespace: on the first start no user exists, and MongoDB's localhost
// exception allows rs.initiate and the first user. Every later run authenticates as root and only
// makes sure the replica set and Muster's user are there, so running it again changes nothing.
const fs = require("fs");
const read = (name) => fs.readFileSync(`/run/secrets/${name}`, "utf8").trim();

const rootPassword = read("mongo_root_password");
// Muster's user, password and database come from the URL Muster itself uses (one source, no drift).
const url = read("muster_mongo_url");
const parts = /^mongodb:\/\/([^:@/]+):([^@/]+)@[^/]+\/([^?]+)/.exec(url);
if (!parts) {
  throw new Error("secrets/muster_mongo_url must look like mongodb://user:password@hosts/database?…");
}
const [appUser, appPassword, appDatabase] = parts.slice(1).map(decodeURIComponent);

const admin = db.getSiblingDB("admin");
let hasRoot = true;
try {
  admin.auth("root", rootPassword);
} catch (e) {
  hasRoot = false; // first start: no user yet, the localhost exception applies
}

let initiated = true;
try {
  rs.status();
} catch (e) {
  if (e.codeName !== "NotYetInitialized") throw e;
  initiated = false;
}
if (!initiated) {
  rs.initiate({
    _id: "rs0",
    members: [
      { _id: 0, host: "mongo1:27017", priority: 2 },
      { _id: 1, host: "mongo2:27017", priority: 1 },
      { _id: 2, host: "mongo3:27017", priority: 1 },
    ],
  });
  print("replica set rs0 initiated");
}

// Users can only be created on the primary; mongo1 has the highest priority.
const deadline = Date.now() + 60000;
while (!db.hello().isWritablePrimary) {
  if (Date.now() > deadline) throw new Error("mongo1 did not become primary within 60 s");
  sleep(500);
}

if (!hasRoot) {
  admin.createUser({ user: "root", pwd: rootPassword, roles: ["root"] });
  admin.auth("root", rootPassword);
  print("created the root user");
}

const app = db.getSiblingDB(appDatabase);
if (app.getUser(appUser) === null) {
  app.createUser({ user: appUser, pwd: appPassword, roles: [{ role: "readWrite", db: appDatabase }] });
  print(`created user ${appUser} on ${appDatabase}`);
} else {
  app.updateUser(appUser, { pwd: appPassword }); // the secret may have been rotated
}
print("replica set ready: " + db.hello().hosts.join(", "));
