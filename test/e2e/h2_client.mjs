// Node's built-in HTTP/2 client, for Crier's HTTP/2 e2e tests. Run as
//
//   node h2_client.mjs URL STREAMS [QUERY]
//
// It opens STREAMS streams on one connection (a self-signed certificate is accepted), each
// for `/events?i=<i>` and QUERY after it, prints `info <i> <status> <link>` for each interim
// (1xx) head of stream i, `open <i> <status>` when it has its head and `event <i> <data>` for
// each SSE data line, and
// reads commands on stdin: `close <i>` resets stream i (RST_STREAM CANCEL, as a browser does
// when one EventSource closes), `quit` exits, so the socket closes (a FIN, no GOAWAY). It exits after
// 30 s in any case.
import http2 from 'node:http2';
import readline from 'node:readline';

const [url, streamsText, query = ''] = process.argv.slice(2);
const say = (...fields) => process.stdout.write(fields.join(' ') + '\n');
setTimeout(() => { say('timeout'); process.exit(2); }, 30000);

const session = http2.connect(url, { rejectUnauthorized: false });
session.on('error', () => say('session-error'));
const streams = [];
for (let i = 0; i < Number(streamsText); i++) {
  const stream = session.request({ ':path': `/events?i=${i}${query}`, accept: 'text/event-stream' });
  stream.setEncoding('utf8');
  stream.on('headers', (headers) => say('info', i, headers[':status'], headers.link));
  stream.on('response', (headers) => say('open', i, headers[':status']));
  let buffer = '';
  stream.on('data', (chunk) => {
    buffer += chunk;
    let at;
    while ((at = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      for (const line of block.split('\n')) {
        if (line.startsWith('data: ')) say('event', i, line.slice(6));
      }
    }
  });
  stream.on('error', () => {});
  streams.push(stream);
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, arg] = line.split(' ');
  if (command === 'close') streams[Number(arg)].close(http2.constants.NGHTTP2_CANCEL);
  // Exiting closes the socket under the session: a FIN, no GOAWAY.
  if (command === 'quit') process.exit(0);
});
process.stdin.on('end', () => process.exit(0));
