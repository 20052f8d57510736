// The npm `mysql` 2.x client (the CppComet test suite's and the parity recorder's client) against a
// CometQL server.  Used by tests/compat/test_cometql_clients.py and tests/parity/test_cometql_wire_parity.py.
//
// Input: one JSON object on stdin
//   {"port": 3307, "user": "15", "password": "CometQLPassword", "database": "CometQL_v1",
//    "steps": ["SHOW TABLES", {"op": "reconnect"}, {"op": "ping"}, ...]}
// A string step is a COM_QUERY.  {"op":"reconnect"} ends the connection (COM_QUIT) and opens a new one.
// After an answer that the client library reports as fatal the script opens a new connection before
// the next step, as the parity recorder did (fixtures/parity/README.md).
//
// Output: one JSON line per step, with node mysql's own field names (tests/parity/conftest.py's
// step_from_client turns them into the steps of fixtures/parity/cometql-4.09.jsonl):
//   {"sql":..., "kind":"rows", "fields":[[name, type]...], "rows":[[string...]...]}
//   {"sql":..., "kind":"ok", "affectedRows":n, "insertId":n, "serverStatus":n}
//   {"sql":..., "kind":"error", "errno":n, "message":"...", "fatal":bool}     an ERR packet from the server
//   {"sql":..., "kind":"closed", "message":"...", "fatal":true}               the library gave up on the link
// plus {"ev":"connected","serverVersion":...} after every (re)connect, {"ev":"connect_error",...} when a
// connect fails (the script then stops), {"op":...} lines for the other steps and a final {"ev":"done"}.
//
// Bounded: every connect and query has a 5 s timeout, and the whole script exits after
// COMETQL_CLIENT_DEADLINE_MS (default 60 s).

import mysql from 'mysql';

const DEADLINE = Number(process.env.COMETQL_CLIENT_DEADLINE_MS || 60000);
setTimeout(() => { emit({ ev: 'deadline' }); process.exit(3); }, DEADLINE);

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function open(job) {
  return new Promise((resolve) => {
    const conn = mysql.createConnection({
      host: job.host || '127.0.0.1', port: job.port, user: job.user, password: job.password,
      database: job.database, connectTimeout: 5000,
    });
    conn.on('error', () => {});  // a fatal error is reported through the query callback
    conn.connect((err) => {
      if (err) {
        emit({ ev: 'connect_error', code: err.code, errno: err.errno, message: err.sqlMessage || err.message,
               fatal: !!err.fatal });
        resolve(null);
        return;
      }
      const greeting = conn._protocol._handshakeInitializationPacket || {};
      emit({ ev: 'connected', serverVersion: greeting.serverVersion, threadId: conn.threadId });
      resolve(conn);
    });
  });
}

function answerOf(sql, err, results, fields) {
  if (err) {
    if (err.sqlMessage !== undefined) {  // an ERR packet
      return { sql, kind: 'error', errno: err.errno, message: err.sqlMessage, fatal: !!err.fatal };
    }
    return { sql, kind: 'closed', message: err.message, fatal: true };
  }
  if (Array.isArray(results)) {
    const names = (fields || []).map((f) => f.name);
    return {
      sql, kind: 'rows', fields: (fields || []).map((f) => [f.name, f.type]),
      rows: results.map((row) => names.map((n) => row[n])),
    };
  }
  return { sql, kind: 'ok', affectedRows: results.affectedRows, insertId: results.insertId,
           serverStatus: results.serverStatus };
}

function query(conn, sql) {
  return new Promise((resolve) => {
    conn.query({ sql, timeout: 5000 }, (err, results, fields) => resolve(answerOf(sql, err, results, fields)));
  });
}

function end(conn) {
  return new Promise((resolve) => {
    let done = false;
    const finish = () => { if (!done) { done = true; resolve(); } };
    setTimeout(() => { conn.destroy(); finish(); }, 2000);
    conn.end(() => finish());  // COM_QUIT; the CppComet server answers it with an OK
  });
}

async function main() {
  const job = await readStdin();
  let conn = await open(job);
  if (!conn) process.exit(0);
  for (const step of job.steps) {
    if (typeof step === 'string') {
      const answer = await query(conn, step);
      emit(answer);
      if (answer.fatal) {
        conn.destroy();
        conn = await open(job);
        if (!conn) process.exit(0);
      }
    } else if (step.op === 'reconnect') {
      await end(conn);
      emit({ op: 'reconnect' });
      conn = await open(job);
      if (!conn) process.exit(0);
    } else if (step.op === 'ping') {
      const err = await new Promise((resolve) => conn.ping({ timeout: 5000 }, resolve));
      emit({ op: 'ping', ok: !err, message: err ? err.message : undefined });
    } else {
      throw new Error('unknown step ' + JSON.stringify(step));
    }
  }
  await end(conn);
  emit({ ev: 'done' });
  process.exit(0);
}

main().catch((err) => { emit({ ev: 'crash', message: String(err && err.stack) }); process.exit(2); });
