// A JsSIP 3.x user agent in node, for the compat tests (tests/compat/test_jssip_node.py).
//
// JsSIP's WebSocketInterface wants a browser-like global `WebSocket`; the third-party `ws` package
// provides one (same constructor, onopen/onmessage/onclose/onerror, binaryType).  TLS verifies
// against the CA in NODE_EXTRA_CA_CERTS (the emulator's local CA), so nothing is disabled.  The
// global is a thin subclass that only RECORDS: every SIP message sent and received is reported
// whole, so the test sees exactly what went over the wire.
//
// Driving protocol: one JSON command per stdin line, one JSON event per stdout line.
//   {"op":"start","ws_url":"wss://127.0.0.1:7443","uri":"sip:000015503@127.0.0.1","password":"..",
//    "authorization_user":"000015503","display_name":"000015503","registrar_server":"sip:127.0.0.1",
//    "register_expires":600}                 new JsSIP.UA(...) + ua.start() (register: true)
//   {"op":"drop","code":1001}                close the SIP WebSocket the way a closed page does: no
//                                            un-REGISTER, and JsSIP is not told (so it cannot reconnect)
//   {"op":"exit"}
// Events: {"ev":"ready"}, {"ev":"ws_open","protocol":"sip","url":".."}, {"ev":"ws_close","code":n},
//   {"ev":"sip_out","text":".."}, {"ev":"sip_in","text":".."},
//   {"ev":"ua","name":"connected|disconnected|registered|unregistered|registrationFailed",
//    "cause":..,"status":..}, {"ev":"dropped"}, {"ev":"error","message":".."}
//
// The script exits on {"op":"exit"}, on stdin EOF, or after JSSIP_CLIENT_DEADLINE_MS (default 30 s).

import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import WebSocket from 'ws';

const require = createRequire(import.meta.url);
const JsSIP = require('jssip');

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function text(data) {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

const sockets = [];

class RecordingWebSocket extends WebSocket {
  constructor(url, protocols, options) {
    super(url, protocols, options);
    sockets.push(this);
    this.addEventListener('open', () => emit({ ev: 'ws_open', protocol: this.protocol, url: String(url) }));
    this.addEventListener('message', (e) => emit({ ev: 'sip_in', text: text(e.data) }));
    this.addEventListener('close', (e) => emit({ ev: 'ws_close', code: e.code }));
    this.addEventListener('error', (e) => emit({ ev: 'ws_error', message: String(e.message || e.error || e) }));
  }

  send(data) {
    emit({ ev: 'sip_out', text: text(data) });
    super.send(data);
  }
}

globalThis.WebSocket = RecordingWebSocket;

let ua = null;

function start(cmd) {
  const socket = new JsSIP.WebSocketInterface(cmd.ws_url);
  ua = new JsSIP.UA({
    sockets: [socket],
    uri: cmd.uri,
    password: cmd.password,
    authorization_user: cmd.authorization_user,
    display_name: cmd.display_name,
    registrar_server: cmd.registrar_server,
    register: true,
    register_expires: cmd.register_expires ?? 600,
    session_timers: false,
    // a failed connection must not hide behind a long back-off in a bounded test
    connection_recovery_min_interval: 1,
    connection_recovery_max_interval: 2,
  });
  for (const name of ['connected', 'disconnected', 'registered', 'unregistered', 'registrationFailed']) {
    ua.on(name, (e) => {
      const out = { ev: 'ua', name };
      if (e && e.cause !== undefined) out.cause = e.cause;
      if (e && e.response) out.status = e.response.status_code;
      if (e && e.code !== undefined) out.code = e.code;
      emit(out);
    });
  }
  ua.start();
}

function drop(cmd) {
  const ws = sockets[sockets.length - 1];
  if (!ws) {
    emit({ ev: 'error', message: 'no socket to drop' });
    return;
  }
  // unbind JsSIP's handlers (as its own disconnect() does) so it neither notices nor reconnects
  ws.onopen = null;
  ws.onclose = null;
  ws.onmessage = null;
  ws.onerror = null;
  ws.addEventListener('close', () => emit({ ev: 'dropped' }));
  ws.close(cmd.code ?? 1001);
}

const deadline = setTimeout(() => {
  emit({ ev: 'error', message: 'deadline reached' });
  process.exit(2);
}, Number(process.env.JSSIP_CLIENT_DEADLINE_MS || 30000));
deadline.unref();

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
    if (cmd.op === 'start') start(cmd);
    else if (cmd.op === 'drop') drop(cmd);
    else if (cmd.op === 'exit') process.exit(0);
    else emit({ ev: 'error', message: `unknown op ${cmd.op}` });
  } catch (err) {
    emit({ ev: 'error', message: String(err && err.stack || err) });
  }
});
rl.on('close', () => process.exit(0));
emit({ ev: 'ready', jssip: JsSIP.version });
