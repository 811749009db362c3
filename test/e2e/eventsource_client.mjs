// A real SSE client for Crier's e2e tests: the npm `eventsource` package (the WHATWG
// EventSource for Node). Run by test/e2e/eventsource_test.exs as
//
//   node eventsource_client.mjs URL COUNT [TYPE,TYPE...]
//
// It listens for "message" and the given event types and prints one line per happening,
// tab-separated, text fields base64-encoded (so any data survives a line protocol):
//
//   open
//   event <type> <base64 data> <base64 lastEventId>
//   error
//   done                    after COUNT events, then it closes the EventSource and exits
//
// EventSource unrefs its reconnect timer, so a script with nothing else to do would exit
// before it reconnects: an interval keeps it alive. It exits when its stdin closes (the test
// ended), and after 30 s in any case.
import { EventSource } from 'eventsource';

const [url, countText, typesText = ''] = process.argv.slice(2);
const count = Number(countText);
const b64 = (text) => Buffer.from(text, 'utf8').toString('base64');
const say = (...fields) => process.stdout.write(fields.join('\t') + '\n');

const keepAlive = setInterval(() => {}, 1000);
const deadline = setTimeout(() => { say('timeout'); process.exit(2); }, 30000);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

let seen = 0;
const source = new EventSource(url);
source.onopen = () => say('open');
source.onerror = () => say('error');

const onEvent = (event) => {
  say('event', event.type, b64(event.data), b64(event.lastEventId));
  seen += 1;
  if (seen >= count) {
    source.close();
    clearInterval(keepAlive);
    clearTimeout(deadline);
    say('done');
    process.exit(0);
  }
};

source.addEventListener('message', onEvent);
for (const type of typesText.split(',').filter(Boolean)) {
  source.addEventListener(type, onEvent);
}
