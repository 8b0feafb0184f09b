// ClickHouse's HTTP interface in front of chDB (ClickHouse 26.x in a library),
// so that HTTP clients -- micro_sentinel_migrate, the writer -- can be tested
// against a current engine. chDB has no server of its own; this adds only the
// transport: every query, insert and error comes from the engine.
//
// usage: node http_server.js DATA_DIR [PORT]
// Prints "http://127.0.0.1:PORT/" on stdout once it listens (PORT 0 or none:
// a free one). Exits when stdin closes or on SIGTERM. Exit 77: chdb is missing.
//
// Supported, as ClickHouse does it: POST with the query in the body, or in the
// `query` parameter with the data in the body (INSERT ... FORMAT RowBinary,
// TSV, ...); GET /?query=; /ping; Content-Encoding: gzip request bodies;
// `database` and any other parameter as a query setting (insert_deduplication_token, ...);
// errors as "Code: N. DB::Exception: ..." with X-ClickHouse-Exception-Code.
// No authentication: any user and password are accepted.
'use strict';

const http = require('node:http');
const path = require('node:path');
const fs = require('node:fs');
const zlib = require('node:zlib');

let chdb;
let native;
try {
  chdb = require('chdb');
  // The raw insert entry point takes any INSERT prefix and format (RowBinary
  // included); the public insert() accepts only text formats.
  native = require(path.join(path.dirname(require.resolve('chdb')), 'dist', 'loader.js')).loadNative();
} catch (e) {
  console.error(`SKIPPED: the npm package chdb is not installed (${e.code || e.message}); run: npm ci --prefix tests/clickhouse/chdb`);
  process.exit(77);
}

const dataDir = process.argv[2];
const port = Number(process.argv[3] || 0);
if (!dataDir) {
  console.error('usage: node http_server.js DATA_DIR [PORT]');
  process.exit(2);
}

const session = new chdb.Session(dataDir);
// Parameters that are not settings: the transport's own.
const transportParams = new Set(['query', 'database', 'user', 'password', 'default_format', 'session_id',
  'session_timeout', 'compress', 'decompress', 'enable_http_compression', 'wait_end_of_query']);

// One statement at a time: a chDB session is one connection.
let queue = Promise.resolve();
const serialized = (fn) => {
  const run = queue.then(fn, fn);
  queue = run.catch(() => {});
  return run;
};

let currentDatabase = 'default';

const sqlLiteral = (v) => `'${String(v).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

// Inserts SETTINGS before a trailing FORMAT clause, or at the end.
function withSettings(sql, settings) {
  const entries = Object.entries(settings);
  if (entries.length === 0) return sql;
  const clause = ` SETTINGS ${entries.map(([k, v]) => `${k} = ${sqlLiteral(v)}`).join(', ')}`;
  const format = /\sFORMAT\s+\w+\s*;?\s*$/i.exec(sql);
  return format ? sql.slice(0, format.index) + clause + sql.slice(format.index) : sql.replace(/;?\s*$/, '') + clause;
}

// Inline data after the query is parsed as text by chDB's raw insert, which
// breaks binary formats (a RowBinary value holding "\n\n" ends the data);
// a file read with FROM INFILE is taken byte for byte. Null without FORMAT.
let infileCounter = 0;
function withInfile(sql, body) {
  const format = /\sFORMAT\s+\w+\s*;?\s*$/i.exec(sql);
  if (!format) return null;
  const settings = /\sSETTINGS\s/i.exec(sql);
  const at = settings && settings.index < format.index ? settings.index : format.index;
  const file = path.join(dataDir, `insert-${process.pid}-${++infileCounter}.bin`);
  fs.writeFileSync(file, body);
  return { sql: `${sql.slice(0, at)} FROM INFILE ${sqlLiteral(file)}${sql.slice(at)}`, path: file };
}

// ClickHouse's HTTP status for an error code (src/Server/HTTPHandler.cpp, abridged).
function statusFor(code) {
  if ([192, 193, 194, 516].includes(code)) return 401;
  if ([497].includes(code)) return 403;
  if ([60, 81, 46, 47, 50, 16].includes(code)) return 404;
  if ([62, 6, 27, 38, 41, 53, 69, 70, 72, 117].includes(code)) return 400;
  return 500;
}

async function execute(req, body) {
  const url = new URL(req.url, 'http://localhost');
  const settings = {};
  for (const [k, v] of url.searchParams) if (!transportParams.has(k)) settings[k] = v;
  // The session keeps USE between requests; HTTP requests must not.
  const database = url.searchParams.get('database') || 'default';
  if (database !== currentDatabase) {
    await session.queryAsync(`USE \`${database.replace(/`/g, '\\`')}\``, { format: 'TabSeparated' });
    currentDatabase = database;
  }

  const urlQuery = url.searchParams.get('query') || '';
  if (urlQuery && body.length > 0) {
    if (/^\s*INSERT\b/i.test(urlQuery)) {
      const fromFile = withInfile(urlQuery, body);
      if (fromFile) {
        try {
          return await run(withSettings(fromFile.sql, settings));
        } finally {
          fs.rmSync(fromFile.path, { force: true });
        }
      }
      await native.InsertRawAsyncConnection(session.connection, withSettings(urlQuery, settings), body, false);
      return Buffer.alloc(0);
    }
    return run(withSettings(`${urlQuery} ${body.toString('utf8')}`, settings));
  }
  const sql = urlQuery || body.toString('utf8');
  if (!sql.trim()) throw Object.assign(new Error('Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)'), { clickhouseCode: 62 });
  return run(withSettings(sql, settings));
}

async function run(sql) {
  const result = await session.queryAsync(sql, { format: 'TabSeparated' });
  return Buffer.from(result.bytes());
}

function errorCode(e) {
  if (Number.isInteger(e.clickhouseCode)) return e.clickhouseCode;
  const m = /Code: (\d+)/.exec(String(e.message));
  return m ? Number(m[1]) : 1000;
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (req.url === '/ping') {
      res.end('Ok.\n');
      return;
    }
    let body = Buffer.concat(chunks);
    if ((req.headers['content-encoding'] || '').toLowerCase() === 'gzip') {
      try {
        body = zlib.gunzipSync(body);
      } catch (e) {
        res.writeHead(400, { 'X-ClickHouse-Exception-Code': '432' });
        res.end(`Code: 432. DB::Exception: Cannot decompress the gzip request body: ${e.message}\n`);
        return;
      }
    }
    serialized(() => execute(req, body)).then(
      (out) => {
        res.writeHead(200, { 'Content-Type': 'text/tab-separated-values; charset=UTF-8' });
        res.end(out);
      },
      (e) => {
        const code = errorCode(e);
        const message = String(e.message).replace(/^Query failed: /, '');
        res.writeHead(statusFor(code), { 'X-ClickHouse-Exception-Code': String(code), 'Content-Type': 'text/plain; charset=UTF-8' });
        res.end(`${message.startsWith('Code:') ? message : `Code: ${code}. DB::Exception: ${message}`}\n`);
      });
  });
});
server.keepAliveTimeout = 30000;

function shutdown() {
  server.close();
  serialized(() => session.close()).finally(() => process.exit(0));
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdin.on('end', shutdown);
process.stdin.on('error', shutdown);
process.stdin.resume();

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`http://127.0.0.1:${server.address().port}/\n`);
});
