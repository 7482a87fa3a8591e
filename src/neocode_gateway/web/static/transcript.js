// The transcript: items from the server (HTML it rendered and escaped), placed by id.
// Applied in slices of a few milliseconds, yielding between them, so that a 10,000-event
// replay never blocks the tab: the first screen shows at once, the rest streams in.
const SLICE_MS = 8;

export class Transcript {
  constructor(root) {
    this.root = root;
    this.byId = new Map();
    this.queue = [];
    this.head = 0;
    this.scheduled = false;
    const channel = new MessageChannel();
    channel.port1.onmessage = () => this.drain();
    this.kick = () => channel.port2.postMessage(0);
  }

  clear() {
    this.root.replaceChildren();
    this.byId.clear();
    this.queue = [];
    this.head = 0;
  }

  push(items) {
    for (const item of items) this.queue.push(item);
    if (!this.scheduled) {
      this.scheduled = true;
      this.kick();
    }
  }

  get pending() { return this.queue.length - this.head; }

  drain() {
    const start = performance.now();
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
    while (this.head < this.queue.length && performance.now() - start < SLICE_MS) {
      this.apply(this.queue[this.head++]);
    }
    if (atBottom) window.scrollTo(0, document.body.scrollHeight);
    if (this.head < this.queue.length) {
      this.kick();
    } else {
      this.queue = [];
      this.head = 0;
      this.scheduled = false;
      this.root.dispatchEvent(new Event("drained"));
    }
  }

  apply(item) {
    let el = this.byId.get(item.id);
    if (!el) {
      el = document.createElement("div");
      el.id = "i-" + item.id;
      this.byId.set(item.id, el);
      this.root.appendChild(el);
    }
    el.className = "item k-" + item.k + (item.open ? " open" : "");
    el.dataset.seq = item.seq;
    el.innerHTML = item.html; // built on the server from escaped text only
  }
}
