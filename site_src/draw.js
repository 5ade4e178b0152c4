// The drawing pad: Pointer Events (mouse, touch, pen), pen / eraser, undo, clear.
//
// Strokes are kept as points in [0,1] canvas coordinates and painted twice:
// - on the visible canvas, whose backing store follows devicePixelRatio (sharp on
//   high-DPI screens), in the theme's ink colour;
// - on an offscreen "ink" canvas of a fixed INK_SIZE, in opaque alpha only. The model's
//   input is computed from that one, so it does not depend on the screen or the theme.

export const INK_SIZE = 280;
// Stroke width as a fraction of the pad: a digit filling the pad is ~200-250 px tall on
// the ink canvas; scaled to 20 px that gives strokes of 2-3 px, like MNIST's.
export const PEN_WIDTH = 0.1;
export const ERASER_WIDTH = 0.22;

export class Pad {
  constructor(canvas, { onChange = () => {}, onStrokeEnd = () => {} } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.ink = document.createElement("canvas");
    this.ink.width = this.ink.height = INK_SIZE;
    this.inkCtx = this.ink.getContext("2d", { willReadFrequently: true });
    this.onChange = onChange;
    this.onStrokeEnd = onStrokeEnd;
    this.tool = "pen";
    this.items = []; // strokes, and {clear: true} markers so that a clear can be undone
    this.undone = []; // what undo took off, for redo; a new stroke or clear forgets it
    this.current = null;
    this.pointerId = null;
    this.version = 0;
    this.inkColor = "#111";
    this._bind();
    this.resize();
  }

  get strokeCount() {
    let n = 0;
    for (let i = this.items.length - 1; i >= 0 && !this.items[i].clear; i--) n++;
    return n;
  }

  get isBlank() {
    return this.strokeCount === 0 && !this.current;
  }

  get canUndo() {
    return this.items.length > 0;
  }

  get canRedo() {
    return this.undone.length > 0;
  }

  setTool(tool) {
    this.tool = tool === "eraser" ? "eraser" : "pen";
    this.canvas.dataset.tool = this.tool;
  }

  setInkColor(color) {
    this.inkColor = color;
    this.redraw();
  }

  clear() {
    if (this.isBlank) return;
    this.items.push({ clear: true });
    this.undone = [];
    this._changed();
    this.redraw();
  }

  undo() {
    if (!this.items.length) return;
    this.undone.push(this.items.pop());
    this._changed();
    this.redraw();
  }

  redo() {
    if (!this.undone.length) return;
    this.items.push(this.undone.pop());
    this._changed();
    this.redraw();
  }

  // A whole pen stroke from points in [0,1] pad coordinates (the app's no-drag samples).
  addStroke(points) {
    this.items.push({ tool: "pen", width: PEN_WIDTH, points });
    this.undone = [];
    this._changed();
    this.redraw();
    this.onStrokeEnd(this);
  }

  // The strokes on the pad now (after the last clear, the one being drawn included), in
  // drawing order: what preprocessStrokes renders for the model.
  visibleStrokes() {
    const start = this.items.length - this.strokeCount;
    const strokes = this.items.slice(start);
    if (this.current) strokes.push(this.current);
    return strokes;
  }

  // The pen's width, a pad fraction: PEN_WIDTH unless the canvas's data-pen-width says
  // otherwise (a hook for the drawn-digit bench's thin and thick pens; the model's input
  // does not depend on it).
  get penWidth() {
    const w = Number(this.canvas.dataset.penWidth);
    return w > 0 && w < 1 ? w : PEN_WIDTH;
  }

  // The ink as one float per ink-canvas pixel, 0 = paper, 1 = ink.
  inkData() {
    const { data } = this.inkCtx.getImageData(0, 0, INK_SIZE, INK_SIZE);
    const out = new Float32Array(INK_SIZE * INK_SIZE);
    for (let i = 0; i < out.length; i++) out[i] = data[i * 4 + 3] / 255;
    return out;
  }

  resize() {
    const rect = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const size = Math.max(1, Math.round((rect.width || 280) * dpr));
    if (this.canvas.width !== size || this.canvas.height !== size) {
      this.canvas.width = size;
      this.canvas.height = size;
    }
    this.redraw();
  }

  redraw() {
    const start = this.items.length - this.strokeCount;
    for (const [ctx, size] of this._targets()) {
      ctx.globalCompositeOperation = "source-over";
      ctx.clearRect(0, 0, size, size);
      for (let i = start; i < this.items.length; i++) this._paintStroke(ctx, size, this.items[i]);
      if (this.current) this._paintStroke(ctx, size, this.current);
    }
  }

  _targets() {
    return [
      [this.ctx, this.canvas.width],
      [this.inkCtx, INK_SIZE],
    ];
  }

  _style(ctx, size, stroke) {
    ctx.globalCompositeOperation = stroke.tool === "eraser" ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = ctx === this.inkCtx ? "#000" : this.inkColor;
    ctx.lineWidth = stroke.width * size;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
  }

  _paintStroke(ctx, size, stroke) {
    const pts = stroke.points;
    this._style(ctx, size, stroke);
    if (pts.length === 1) {
      ctx.beginPath();
      ctx.arc(pts[0][0] * size, pts[0][1] * size, (stroke.width * size) / 2, 0, Math.PI * 2);
      ctx.fill();
      return;
    }
    ctx.beginPath();
    ctx.moveTo(pts[0][0] * size, pts[0][1] * size);
    for (let i = 1; i < pts.length; i++) ctx.lineTo(pts[i][0] * size, pts[i][1] * size);
    ctx.stroke();
  }

  _paintSegment(a, b) {
    for (const [ctx, size] of this._targets()) {
      this._style(ctx, size, this.current);
      ctx.beginPath();
      ctx.moveTo(a[0] * size, a[1] * size);
      ctx.lineTo(b[0] * size, b[1] * size);
      ctx.stroke();
    }
  }

  _point(e) {
    const rect = this.canvas.getBoundingClientRect();
    return [(e.clientX - rect.left) / rect.width, (e.clientY - rect.top) / rect.height];
  }

  _changed() {
    this.version++;
    this.onChange(this);
  }

  _bind() {
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => {
      if (this.pointerId !== null || (e.pointerType === "mouse" && e.button !== 0)) return;
      e.preventDefault();
      this.pointerId = e.pointerId;
      try {
        c.setPointerCapture(e.pointerId);
      } catch {
        // synthetic events have no active pointer to capture; drawing still works
      }
      const p = this._point(e);
      this.current = { tool: this.tool, width: this.tool === "eraser" ? ERASER_WIDTH : this.penWidth, points: [p] };
      for (const [ctx, size] of this._targets()) this._paintStroke(ctx, size, this.current);
      this._changed();
    });
    const move = (e) => {
      if (e.pointerId !== this.pointerId || !this.current) return;
      e.preventDefault();
      const events = typeof e.getCoalescedEvents === "function" ? e.getCoalescedEvents() : [];
      for (const ev of events.length ? events : [e]) {
        const p = this._point(ev);
        const pts = this.current.points;
        const last = pts[pts.length - 1];
        if (Math.abs(p[0] - last[0]) + Math.abs(p[1] - last[1]) < 0.002) continue;
        pts.push(p);
        this._paintSegment(last, p);
      }
      this._changed();
    };
    const end = (e) => {
      if (e.pointerId !== this.pointerId) return;
      this.pointerId = null;
      if (this.current) {
        this.items.push(this.current);
        this.undone = [];
        this.current = null;
        this._changed();
        this.onStrokeEnd(this);
      }
    };
    c.addEventListener("pointermove", move);
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
    c.addEventListener("lostpointercapture", end);
    c.addEventListener("contextmenu", (e) => e.preventDefault());
    new ResizeObserver(() => this.resize()).observe(c);
    // a zoom or a move to another screen changes devicePixelRatio without resizing the box
    const watchDpr = () => {
      const mq = window.matchMedia(`(resolution: ${window.devicePixelRatio || 1}dppx)`);
      mq.addEventListener("change", () => {
        this.resize();
        watchDpr();
      }, { once: true });
    };
    watchDpr();
  }
}
