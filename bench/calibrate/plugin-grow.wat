;; A plugin that keeps per-request state in its linear memory and grows it, for docs/runtimes.md:
;; every request appends 64 bytes of the request to its state, and the memory grows by a page
;; (64 KiB) whenever the state reaches its end, up to 256 pages (16 MiB); then the state wraps.
;;   wat2wasm bench/calibrate/plugin-grow.wat -o grow.wasm
;;   hostfit calibrate --runtime v8 --plugins 8 --instances 32 --requests 300000 --module grow.wasm
(module
  (memory (export "memory") 4 256)
  (global $end (mut i32) (i32.const 65536))
  (func (export "on_request") (param $ptr i32) (param $len i32) (result i32)
    (local $i i32)
    (if (i32.ge_u (i32.add (global.get $end) (i32.const 64)) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.lt_s (memory.grow (i32.const 1)) (i32.const 0))
              (then (global.set $end (i32.const 65536))))))
    (loop $copy
      (i32.store8 (i32.add (global.get $end) (local.get $i))
                  (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $copy (i32.lt_u (local.get $i) (i32.const 64))))
    (global.set $end (i32.add (global.get $end) (i32.const 64)))
    (i32.const 200)))
