// A third-party ESL client (npm `modesl`, inbound mode) driven line by line by tests/compat/test_esl_client.py.
//
//   node esl_modesl_client.mjs <host> <port> <password> <plain|json|xml>
//
// What modesl does by itself: on `auth/request` it sends `auth <password>`; on `+OK accepted` it
// subscribes `event json BACKGROUND_JOB CHANNEL_EXECUTE_COMPLETE` and fires its ready callback.  This
// script then subscribes `event <format> CUSTOM conference::maintenance` (modesl appends its two
// required event names, which FreeSWITCH then takes as further subclasses: everything after CUSTOM is).
//
// stdout: one JSON object per line:
//   {"type":"auth","ok":true|false,"reply":"..."}
//   {"type":"subscribed","reply":"+OK event listener enabled plain"}
//   {"type":"event","contentType":"text/event-plain","headers":[[name,value],...],"body":"..."}
//   {"type":"api","id":N,"body":"..."}
//   {"type":"disconnect","body":"..."}        (text/disconnect-notice)
//   {"type":"end"}                            (the server closed the socket)
// stdin: one JSON object per line: {"api":"conference list","id":N} or {"exit":true}.

import esl from "modesl";
import readline from "node:readline";

const [host, port, password, format = "plain"] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const headersOf = (event) => event.headers.map((h) => [h.name, String(h.value)]);

const conn = new esl.Connection(host, Number(port), password, () => {
  out({ type: "auth", ok: true, reply: "+OK " + (conn.authed ? "accepted" : "?") });
  conn.events(format, "CUSTOM conference::maintenance", (reply) => {
    out({ type: "subscribed", reply: reply.getHeader("Reply-Text") });
  });
});

conn.on("esl::event::auth::fail", (event) => {
  out({ type: "auth", ok: false, reply: event.getHeader("Reply-Text") });
});
conn.on("esl::event::disconnect::notice", (event, headers, body) => {
  out({ type: "disconnect", body: body || event.getBody() });
});
// text/event-* are emitted as esl::event::<Event-Name>::<Unique-ID|Core-UUID>
conn.on("esl::event::CUSTOM::*", (event, headers) => {
  out({ type: "event", contentType: headers["Content-Type"], headers: headersOf(event), body: event.getBody() });
});
conn.on("esl::end", () => {
  out({ type: "end" });
  process.exit(0);
});
conn.on("error", (err) => {
  out({ type: "error", message: String(err && err.message || err) });
  process.exit(3);
});

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const cmd = JSON.parse(line);
  if (cmd.api) {
    conn.api(cmd.api, (res) => out({ type: "api", id: cmd.id, body: res.getBody() }));
  } else if (cmd.exit) {
    conn.disconnect();
    setTimeout(() => process.exit(0), 200);
  }
});
rl.on("close", () => process.exit(0));
