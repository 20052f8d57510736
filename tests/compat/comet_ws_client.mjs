// A CppComet browser client stand-in for the compat tests, built on the third-party `ws` package.
//
// It speaks exactly what CometServerApi.js 4.08 puts on the wire (comet-ws-protocol.md 1.1, 3):
//
//   URL   ws://<node>/ws/sesion=<user_key>&myid=<user_id>&devid=<dev_id>&v=4.08&uuid=<32>&api=js
//         (values concatenated raw, JavaScript `undefined` becomes the text "undefined";
//          a node "host:port/comet-server" gives the /comet-server/ws/ form)
//   subscription(...)          subscription\n<pipe1>\n<pipe2>...
//   web_pipe_send(p, e, msg)   web_pipe2\n<pipe>\n<event>\n*\n<JSON.stringify(msg)>
//   get_pipe_log(p)            pipe_log\n<pipe>\n<marker>\n
//   count_users_in_pipe(p)     pipe_count\n<pipe>\n<marker>\n
//   getTrackPipeUsers(p)       track_pipe_users\n<pipe>\n<marker>
//   getUserData(id)            user_data\n<marker>\n<user_id>
//   stop()                     a Close frame from the client (ws.close(1000))
//
// Driving protocol: one JSON command per stdin line, one JSON event per stdout line.
//   {"op":"start","node":"127.0.0.1:8087","user_key":"k","user_id":1,"dev_id":1,"uuid":"..."}
//   {"op":"url","url":"ws://..."}                  connect to a raw URL
//   {"op":"subscription","pipes":["a","b"]}
//   {"op":"web_pipe_send","pipe":"web_x","event":"e","msg":<any JSON>}
//   {"op":"get_pipe_log"|"count_users_in_pipe"|"getTrackPipeUsers","pipe":"p","marker":"m"}
//   {"op":"getUserData","user_id":5,"marker":"m"}
//   {"op":"send","text":"..."} / {"op":"send_binary","text":"..."}   a raw command frame
//   {"op":"close","code":1000}                     client Close frame
//   {"op":"exit"}
// Events: {"ev":"url"}, {"ev":"upgrade","status":101,"headers":[...raw]}, {"ev":"open"},
//   {"ev":"message","text":..., "binary":bool, "len":<bytes>, "b64":...}, {"ev":"sent","text":...},
//   {"ev":"close","code":n,"reason":"...","wasClean":bool}, {"ev":"error","message":"..."}, {"ev":"ready"}
//
// The script exits on {"op":"exit"}, on stdin EOF, or after a hard deadline (COMET_CLIENT_DEADLINE_MS,
// default 60 s) so that a broken test can never leave it running.

import { createInterface } from 'node:readline';
import WebSocket from 'ws';

const CLIENT_VERSION = '4.08';
const UUID_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-';

let socket = null;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function randomUuid() {
  let out = '';
  for (let i = 0; i < 32; i++) out += UUID_CHARS[Math.floor(Math.random() * UUID_CHARS.length)];
  return out;
}

function randomMarker() {
  // the real client: 10 characters derived from Math.random(), normally digits
  return String(Math.random()).replace('.', '').padEnd(10, '0').substring(1, 11);
}

// The URL exactly as CometServerApi.js 4.08 builds it: raw concatenation, no encoding.
function cometUrl({ node, user_key, user_id, dev_id, uuid, wss }) {
  const scheme = wss ? 'wss' : 'ws';
  return scheme + '://' + node + '/ws/sesion=' + user_key + '&myid=' + user_id + '&devid=' + dev_id +
    '&v=' + CLIENT_VERSION + '&uuid=' + uuid + '&api=js';
}

function connect(url) {
  emit({ ev: 'url', url });
  // A browser sends no sub-protocol; ws offers permessage-deflate, which the server must ignore.
  const ws = new WebSocket(url, { handshakeTimeout: 10000 });
  socket = ws;
  ws.on('upgrade', (res) => emit({ ev: 'upgrade', status: res.statusCode, headers: res.rawHeaders }));
  ws.on('unexpected-response', (req, res) => {
    emit({ ev: 'unexpected-response', status: res.statusCode });
    req.destroy();
  });
  ws.on('open', () => emit({ ev: 'open', extensions: ws.extensions, protocol: ws.protocol }));
  ws.on('message', (data, isBinary) => {
    const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data);
    emit({ ev: 'message', text: buf.toString('utf8'), binary: isBinary, len: buf.length,
           b64: buf.toString('base64') });
  });
  ws.on('error', (err) => emit({ ev: 'error', message: String(err && err.message) }));
  ws.addEventListener('close', (event) => {
    emit({ ev: 'close', code: event.code, reason: String(event.reason || ''), wasClean: event.wasClean });
  });
}

function send(text, binary = false) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    emit({ ev: 'error', message: 'send while not open: ' + JSON.stringify(text) });
    return;
  }
  socket.send(binary ? Buffer.from(text, 'utf8') : text, { binary });
  emit({ ev: 'sent', text, binary });
}

function handle(cmd) {
  switch (cmd.op) {
    case 'start': {
      const uuid = cmd.uuid === undefined ? randomUuid() : cmd.uuid;
      // JSON cannot carry `undefined`; a missing field concatenates as the text "undefined", as in JS
      connect(cometUrl({ node: cmd.node, user_key: cmd.user_key, user_id: cmd.user_id,
                         dev_id: cmd.dev_id === undefined ? '0' : cmd.dev_id, uuid, wss: !!cmd.wss }));
      break;
    }
    case 'url':
      connect(cmd.url);
      break;
    case 'subscription':
      send('subscription\n' + cmd.pipes.join('\n'));
      break;
    case 'web_pipe_send':
      send('web_pipe2\n' + cmd.pipe + '\n' + cmd.event + '\n*\n' + JSON.stringify(cmd.msg));
      break;
    case 'get_pipe_log':
      send('pipe_log\n' + cmd.pipe + '\n' + (cmd.marker || randomMarker()) + '\n');
      break;
    case 'count_users_in_pipe':
      send('pipe_count\n' + cmd.pipe + '\n' + (cmd.marker || randomMarker()) + '\n');
      break;
    case 'getTrackPipeUsers':
      send('track_pipe_users\n' + cmd.pipe + '\n' + (cmd.marker || randomMarker()));
      break;
    case 'getUserData':
      send('user_data\n' + (cmd.marker || randomMarker()) + '\n' + cmd.user_id);
      break;
    case 'send':
      send(cmd.text, false);
      break;
    case 'send_binary':
      send(cmd.text, true);
      break;
    case 'close':
      if (socket) socket.close(cmd.code === undefined ? 1000 : cmd.code, cmd.reason || '');
      break;
    case 'exit':
      shutdown(0);
      break;
    default:
      emit({ ev: 'error', message: 'unknown op ' + cmd.op });
  }
}

function shutdown(code) {
  if (socket) socket.terminate();
  process.exit(code);
}

const deadline = Number(process.env.COMET_CLIENT_DEADLINE_MS || 60000);
setTimeout(() => {
  emit({ ev: 'error', message: 'deadline reached' });
  shutdown(3);
}, deadline).unref();

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    emit({ ev: 'error', message: 'bad command line: ' + line });
    return;
  }
  try {
    handle(cmd);
  } catch (err) {
    emit({ ev: 'error', message: String(err && err.stack) });
  }
});
rl.on('close', () => shutdown(0));
emit({ ev: 'ready', node: process.versions.node });
