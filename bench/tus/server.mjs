// The @tus/server baseline: a tus 1.0 server writing to local files (no checksum, no fsync).
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const port = Number(process.env.PORT || 1080);
const directory = process.env.TUS_DIR || "./files";
const server = new Server({ path: "/files", datastore: new FileStore({ directory }) });
server.listen({ host: "127.0.0.1", port }, () => console.log(`tus on ${port}`));
