// Upload one file with tus-js-client, as a phone app would; prints one JSON line.
// Usage: node upload.mjs '{"endpoint", "token", "photoId", "file", "mode", "chunkSize"}'
// mode "during-creation": the first chunk travels with the POST (creation-with-upload).
// mode "abort-resume": abort half-way, then resume the same upload by its URL.
import { readFileSync } from "node:fs";
import { Upload } from "tus-js-client";

const args = JSON.parse(process.argv[2]);
const data = readFileSync(args.file); // a Buffer
const common = {
  headers: { Authorization: `Bearer ${args.token}` },
  metadata: { photo_id: args.photoId, filename: "IMG_0042.JPG", filetype: "image/jpeg" },
  chunkSize: args.chunkSize,
  retryDelays: [100, 500, 1000],
};

function run(options) {
  return new Promise((resolve, reject) => {
    const upload = new Upload(data, {
      ...common,
      ...options,
      onError: reject,
      onSuccess: () => resolve(upload),
    });
    if (options.onStart) options.onStart(upload);
    upload.start();
  });
}

async function main() {
  if (args.mode === "during-creation") {
    const upload = await run({ endpoint: args.endpoint, uploadDataDuringCreation: true });
    return { url: upload.url };
  }
  // abort-resume
  let aborted;
  const stopped = new Promise((resolve) => {
    let upload;
    run({
      endpoint: args.endpoint,
      onStart: (u) => { upload = u; },
      onProgress: (sent, total) => {
        if (!aborted && sent >= total / 2) {
          aborted = upload.abort().then(() => resolve(upload.url));
        }
      },
    }).catch(() => {});
  });
  const url = await stopped;
  const head = await fetch(new URL(url, args.endpoint), {
    method: "HEAD",
    headers: { "Tus-Resumable": "1.0.0", Authorization: `Bearer ${args.token}` },
  });
  const offsetAfterAbort = Number(head.headers.get("upload-offset"));
  let resumedFrom = null;
  await run({
    uploadUrl: new URL(url, args.endpoint).href,
    onProgress: (sent) => { if (resumedFrom === null) resumedFrom = sent; },
  });
  return { url, offsetAfterAbort, resumedFrom };
}

main().then(
  (result) => { console.log(JSON.stringify({ ok: true, ...result })); },
  (error) => { console.log(JSON.stringify({ ok: false, error: String(error) })); process.exit(1); },
);
