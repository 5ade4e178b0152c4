;; The CPU fallback's kernels: WebAssembly with 128-bit SIMD (f32x4), one thread.
;; Assembled into kernels.wasm when the site is built (src/mnist_webgpu/site.py); cpu.js
;; lays the weights out in this module's memory once per model and calls these per run.
;;
;; Every pointer is a byte offset into the exported memory; v128 accesses need no alignment,
;; cpu.js keeps them 16-byte aligned anyway. Channels and outputs come in blocks of 16
;; (four f32x4 accumulators); cpu.js pads the weights of a partial block with zeros.

(module
  (memory (export "memory") 1)

  ;; out = (in - mean) * scale, `rows` rows of `cols` floats, out rows `out_stride` bytes apart
  ;; (28 for the MLP's input vector, the inside of a zero-bordered plane for the CNN's first conv)
  (func (export "normalize")
    (param $in i32) (param $rows i32) (param $cols i32) (param $out i32) (param $out_stride i32)
    (param $mean f32) (param $scale f32)
    (local $c i32) (local $o i32)
    (loop $row
      (local.set $c (i32.const 0))
      (local.set $o (local.get $out))
      (loop $col
        (f32.store (local.get $o)
          (f32.mul (f32.sub (f32.load (local.get $in)) (local.get $mean)) (local.get $scale)))
        (local.set $in (i32.add (local.get $in) (i32.const 4)))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br_if $col (i32.lt_u (local.tee $c (i32.add (local.get $c) (i32.const 1))) (local.get $cols))))
      (local.set $out (i32.add (local.get $out) (local.get $out_stride)))
      (br_if $row (local.tee $rows (i32.sub (local.get $rows) (i32.const 1))))))

  ;; Dense layer: y = W x + b, ReLU'd when $relu is not 0.
  ;; x: $n floats ($n even, > 0); y and b: 16 * $blocks floats;
  ;; W: [block][i][16] (for each block of 16 outputs, input i's 16 weights side by side),
  ;; so the inner loop reads W and x front to back.
  (func (export "dense")
    (param $x i32) (param $n i32) (param $w i32) (param $b i32) (param $y i32) (param $blocks i32)
    (param $relu i32)
    (local $p i32) (local $end i32) (local $s v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $n) (i32.const 2))))
    (loop $block
      (local.set $a0 (v128.const i32x4 0 0 0 0))
      (local.set $a1 (v128.const i32x4 0 0 0 0))
      (local.set $a2 (v128.const i32x4 0 0 0 0))
      (local.set $a3 (v128.const i32x4 0 0 0 0))
      (local.set $p (local.get $x))
      (loop $i ;; two inputs a turn
        (local.set $s (v128.load32_splat (local.get $p)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $s) (v128.load offset=0 (local.get $w)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $s) (v128.load offset=16 (local.get $w)))))
        (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (local.get $s) (v128.load offset=32 (local.get $w)))))
        (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (local.get $s) (v128.load offset=48 (local.get $w)))))
        (local.set $s (v128.load32_splat offset=4 (local.get $p)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $s) (v128.load offset=64 (local.get $w)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $s) (v128.load offset=80 (local.get $w)))))
        (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (local.get $s) (v128.load offset=96 (local.get $w)))))
        (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (local.get $s) (v128.load offset=112 (local.get $w)))))
        (local.set $w (i32.add (local.get $w) (i32.const 128)))
        (br_if $i (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 8))) (local.get $end))))
      (local.set $a0 (f32x4.add (local.get $a0) (v128.load offset=0 (local.get $b))))
      (local.set $a1 (f32x4.add (local.get $a1) (v128.load offset=16 (local.get $b))))
      (local.set $a2 (f32x4.add (local.get $a2) (v128.load offset=32 (local.get $b))))
      (local.set $a3 (f32x4.add (local.get $a3) (v128.load offset=48 (local.get $b))))
      (if (local.get $relu)
        (then
          (local.set $a0 (f32x4.max (local.get $a0) (v128.const i32x4 0 0 0 0)))
          (local.set $a1 (f32x4.max (local.get $a1) (v128.const i32x4 0 0 0 0)))
          (local.set $a2 (f32x4.max (local.get $a2) (v128.const i32x4 0 0 0 0)))
          (local.set $a3 (f32x4.max (local.get $a3) (v128.const i32x4 0 0 0 0)))))
      (v128.store offset=0 (local.get $y) (local.get $a0))
      (v128.store offset=16 (local.get $y) (local.get $a1))
      (v128.store offset=32 (local.get $y) (local.get $a2))
      (v128.store offset=48 (local.get $y) (local.get $a3))
      (local.set $b (i32.add (local.get $b) (i32.const 64)))
      (local.set $y (i32.add (local.get $y) (i32.const 64)))
      (br_if $block (local.tee $blocks (i32.sub (local.get $blocks) (i32.const 1))))))

  ;; k x k convolution (stride 1) with bias, of an input already padded with zero borders.
  ;; in: (H + k - 1) x (W + k - 1) pixels of $c floats (channel last); out: H x W pixels of
  ;; 16 * $blocks floats; b: 16 * $blocks floats; w: [block][dy][dx][c][16].
  ;; One tap row (k neighbouring pixels) is k * c contiguous floats of the input, and the
  ;; weights of a block are read front to back, so the inner loop is a dot product.
  (func (export "conv")
    (param $in i32) (param $h i32) (param $wd i32) (param $c i32) (param $k i32)
    (param $w i32) (param $b i32) (param $out i32) (param $blocks i32)
    (local $row_bytes i32) (local $span_bytes i32)
    (local $y i32) (local $x i32) (local $blk i32) (local $dy i32)
    (local $pixel i32) (local $p i32) (local $end i32) (local $wp i32) (local $bp i32) (local $s v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local.set $row_bytes
      (i32.shl (i32.mul (i32.sub (i32.add (local.get $wd) (local.get $k)) (i32.const 1)) (local.get $c)) (i32.const 2)))
    (local.set $span_bytes (i32.shl (i32.mul (local.get $k) (local.get $c)) (i32.const 2)))
    (local.set $y (i32.const 0))
    (loop $rows
      (local.set $x (i32.const 0))
      (loop $cols
        ;; the top-left input pixel of this output pixel's window
        (local.set $pixel
          (i32.add (local.get $in)
            (i32.add (i32.mul (local.get $y) (local.get $row_bytes))
              (i32.shl (i32.mul (local.get $x) (local.get $c)) (i32.const 2)))))
        (local.set $wp (local.get $w))
        (local.set $bp (local.get $b))
        (local.set $blk (local.get $blocks))
        (loop $block
          (local.set $a0 (v128.load offset=0 (local.get $bp)))
          (local.set $a1 (v128.load offset=16 (local.get $bp)))
          (local.set $a2 (v128.load offset=32 (local.get $bp)))
          (local.set $a3 (v128.load offset=48 (local.get $bp)))
          (local.set $p (local.get $pixel))
          (local.set $dy (local.get $k))
          (loop $taps
            (local.set $end (i32.add (local.get $p) (local.get $span_bytes)))
            (loop $dot
              (local.set $s (v128.load32_splat (local.get $p)))
              (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $s) (v128.load offset=0 (local.get $wp)))))
              (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $s) (v128.load offset=16 (local.get $wp)))))
              (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (local.get $s) (v128.load offset=32 (local.get $wp)))))
              (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (local.get $s) (v128.load offset=48 (local.get $wp)))))
              (local.set $wp (i32.add (local.get $wp) (i32.const 64)))
              (br_if $dot (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 4))) (local.get $end))))
            (local.set $p (i32.add (local.get $p) (i32.sub (local.get $row_bytes) (local.get $span_bytes))))
            (br_if $taps (local.tee $dy (i32.sub (local.get $dy) (i32.const 1)))))
          (v128.store offset=0 (local.get $out) (local.get $a0))
          (v128.store offset=16 (local.get $out) (local.get $a1))
          (v128.store offset=32 (local.get $out) (local.get $a2))
          (v128.store offset=48 (local.get $out) (local.get $a3))
          (local.set $out (i32.add (local.get $out) (i32.const 64)))
          (local.set $bp (i32.add (local.get $bp) (i32.const 64)))
          (br_if $block (local.tee $blk (i32.sub (local.get $blk) (i32.const 1)))))
        (br_if $cols (i32.lt_u (local.tee $x (i32.add (local.get $x) (i32.const 1))) (local.get $wd))))
      (br_if $rows (i32.lt_u (local.tee $y (i32.add (local.get $y) (i32.const 1))) (local.get $h)))))

  ;; ReLU then 2x2 max-pool with stride 2 of H x W pixels of $c floats ($c a multiple of 4),
  ;; dropping an odd last row and column as tinygrad does. Output rows are $out_stride bytes
  ;; apart, so the result can land inside the next conv's zero-bordered input.
  (func (export "relu_pool")
    (param $in i32) (param $h i32) (param $wd i32) (param $c i32) (param $out i32) (param $out_stride i32)
    (local $pixel_bytes i32) (local $row_bytes i32) (local $oy i32) (local $ox i32) (local $v i32)
    (local $p i32) (local $o i32)
    (local.set $pixel_bytes (i32.shl (local.get $c) (i32.const 2)))
    (local.set $row_bytes (i32.mul (local.get $wd) (local.get $pixel_bytes)))
    (local.set $h (i32.shr_u (local.get $h) (i32.const 1)))
    (local.set $wd (i32.shr_u (local.get $wd) (i32.const 1)))
    (local.set $oy (i32.const 0))
    (loop $rows
      (local.set $p (i32.add (local.get $in) (i32.mul (i32.shl (local.get $oy) (i32.const 1)) (local.get $row_bytes))))
      (local.set $o (i32.add (local.get $out) (i32.mul (local.get $oy) (local.get $out_stride))))
      (local.set $ox (local.get $wd))
      (loop $cols
        (local.set $v (i32.shr_u (local.get $c) (i32.const 2)))
        (loop $lanes
          (v128.store (local.get $o)
            (f32x4.max
              (f32x4.max
                (f32x4.max (v128.load (local.get $p))
                           (v128.load (i32.add (local.get $p) (local.get $pixel_bytes))))
                (f32x4.max (v128.load (i32.add (local.get $p) (local.get $row_bytes)))
                           (v128.load (i32.add (i32.add (local.get $p) (local.get $row_bytes)) (local.get $pixel_bytes)))))
              (v128.const i32x4 0 0 0 0)))
          (local.set $p (i32.add (local.get $p) (i32.const 16)))
          (local.set $o (i32.add (local.get $o) (i32.const 16)))
          (br_if $lanes (local.tee $v (i32.sub (local.get $v) (i32.const 1)))))
        ;; past the second pixel of the pair: the first was walked by the lanes loop
        (local.set $p (i32.add (local.get $p) (local.get $pixel_bytes)))
        (br_if $cols (local.tee $ox (i32.sub (local.get $ox) (i32.const 1)))))
      (br_if $rows (i32.lt_u (local.tee $oy (i32.add (local.get $oy) (i32.const 1))) (local.get $h)))))
)
