;; A gateway plugin as a proxy-wasm host would load it: a linear memory of a few pages, a handful of
;; functions, a table for indirect calls and some globals. on_request(ptr, len) hashes the request
;; bytes the host copied to `ptr`, dispatches through the table on the hash, counts the request,
;; and returns a status in 200..203 so the host can see that each plugin really ran.
(module
  (memory (export "memory") 4 16)
  (global $requests (mut i32) (i32.const 0))
  (global $last_hash (mut i32) (i32.const 0))
  (type $step (func (param i32) (result i32)))
  (table 4 funcref)
  (elem (i32.const 0) $allow $tag $count $mix)

  (func $allow (type $step) (local.get 0))
  (func $tag (type $step) (i32.or (local.get 0) (i32.const 0x100)))
  (func $count (type $step) (i32.add (local.get 0) (global.get $requests)))
  (func $mix (type $step) (i32.xor (local.get 0) (i32.shl (local.get 0) (i32.const 7))))

  ;; FNV-1a over memory[ptr, ptr + len).
  (func $fnv1a (param $ptr i32) (param $len i32) (result i32)
    (local $hash i32) (local $end i32)
    (local.set $hash (i32.const 0x811c9dc5))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $ptr) (local.get $end)))
        (local.set $hash
          (i32.mul (i32.xor (local.get $hash) (i32.load8_u (local.get $ptr)))
                   (i32.const 0x01000193)))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 1)))
        (br $next)))
    (local.get $hash))

  (func (export "on_request") (param $ptr i32) (param $len i32) (result i32)
    (local $hash i32)
    (local.set $hash (call $fnv1a (local.get $ptr) (local.get $len)))
    (global.set $requests (i32.add (global.get $requests) (i32.const 1)))
    (global.set $last_hash
      (call_indirect (type $step) (local.get $hash)
                     (i32.and (local.get $hash) (i32.const 3))))
    ;; Keep the last hash in memory too, as a filter keeps per-request state.
    (i32.store (i32.const 0) (global.get $last_hash))
    (i32.add (i32.const 200) (i32.and (local.get $hash) (i32.const 3))))

  (func (export "requests") (result i32) (global.get $requests))
)
