//! wasmtime's `Store::rewind` (our patch, host/patches/README.md), which request
//! isolation uses to give each request an instance as instantiation left it:
//! a hand-written component changes every kind of state guest code can change,
//! and each must read as fresh after a rewind.

use wasmtime::component::{Component, Linker, TypedFunc};
use wasmtime::{Engine, Store};
use wsgi_wasm::runtime::engine;

/// A component whose `dirty` export changes linear memory (in its image, past
/// it, and by growing it), a mutable global, a table (an entry, and its size),
/// a passive element and a passive data segment, and its own handle table (a
/// resource handle it never drops); the other exports read each of them back.
const STATEFUL: &str = r#"
(component
  (type $r (resource (rep i32)))
  (core func $new (canon resource.new $r))
  (core module $m
    (import "" "new" (func $new (param i32) (result i32)))
    (memory 1)
    (data (i32.const 16) "fresh")
    (global $g (mut i32) (i32.const 7))
    (table $t 2 10 funcref)
    (type $answer (func (result i32)))
    (elem (table $t) (i32.const 0) func $one)
    (elem $passive_elem func $two)
    (data $passive_data "p")
    (func $one (result i32) i32.const 1)
    (func $two (result i32) i32.const 2)
    (func (export "dirty")
      (i32.store8 (i32.const 16) (i32.const 75))
      (i32.store (i32.const 40000) (i32.const 99))
      (drop (memory.grow (i32.const 1)))
      (i32.store (i32.const 65636) (i32.const 55))
      (global.set $g (i32.const 8))
      (drop (table.grow $t (ref.null func) (i32.const 3)))
      (table.set $t (i32.const 0) (ref.func $two))
      (elem.drop $passive_elem)
      (data.drop $passive_data)
      (drop (call $new (i32.const 1))))
    (func (export "first-byte") (result i32) (i32.load8_u (i32.const 16)))
    (func (export "far-word") (result i32) (i32.load (i32.const 40000)))
    (func (export "pages") (result i32) (memory.size))
    (func (export "global") (result i32) (global.get $g))
    (func (export "table-size") (result i32) (table.size $t))
    (func (export "table-entry") (result i32) (call_indirect $t (type $answer) (i32.const 0)))
    (func (export "passive-elem") (result i32)
      (table.init $t $passive_elem (i32.const 1) (i32.const 0) (i32.const 1))
      (call_indirect $t (type $answer) (i32.const 1)))
    (func (export "passive-data") (result i32)
      (memory.init $passive_data (i32.const 200) (i32.const 0) (i32.const 1))
      (i32.load8_u (i32.const 200)))
    (func (export "grown-word") (result i32)
      (drop (memory.grow (i32.const 1)))
      (i32.load (i32.const 65636)))
    (func (export "next-handle") (result i32) (call $new (i32.const 2))))
  (core instance $i (instantiate $m (with "" (instance (export "new" (func $new))))))
  (func (export "dirty") (canon lift (core func $i "dirty")))
  (func (export "first-byte") (result u32) (canon lift (core func $i "first-byte")))
  (func (export "far-word") (result u32) (canon lift (core func $i "far-word")))
  (func (export "pages") (result u32) (canon lift (core func $i "pages")))
  (func (export "global") (result u32) (canon lift (core func $i "global")))
  (func (export "table-size") (result u32) (canon lift (core func $i "table-size")))
  (func (export "table-entry") (result u32) (canon lift (core func $i "table-entry")))
  (func (export "passive-elem") (result u32) (canon lift (core func $i "passive-elem")))
  (func (export "passive-data") (result u32) (canon lift (core func $i "passive-data")))
  (func (export "grown-word") (result u32) (canon lift (core func $i "grown-word")))
  (func (export "next-handle") (result u32) (canon lift (core func $i "next-handle")))
)
"#;

/// Readers that cannot trap, whatever `dirty` did.
const READERS: [&str; 7] = [
    "first-byte",
    "far-word",
    "pages",
    "global",
    "table-size",
    "table-entry",
    "next-handle",
];
/// What they return in a fresh instance: the next handle is the first one.
const FRESH: [u32; 7] = [b'f' as u32, 0, 1, 7, 2, 1, 1];
/// What they return after `dirty`: 'K', 99, one more page, 8, three more
/// entries, entry 0 calls $two, and the handle `dirty` leaked made the next 2.
const DIRTIED: [u32; 7] = [75, 99, 2, 8, 5, 2, 2];

fn engine() -> Engine {
    let (engine, _fault_around) = engine::new_engine(engine::EngineSettings {
        max_instances: 2,
        max_memory: 16 << 20,
        keep_resident: engine::REQUEST_ISOLATION_KEEP_RESIDENT,
    })
    .unwrap();
    engine
}

fn store(engine: &Engine) -> Store<()> {
    let mut store = Store::new(engine, ());
    // The engine counts epochs for CPU limits; this test has none.
    store.set_epoch_deadline(u64::MAX / 2);
    store
}

async fn call(store: &mut Store<()>, instance: &wasmtime::component::Instance, name: &str) -> wasmtime::Result<u32> {
    let func: TypedFunc<(), (u32,)> = instance.get_typed_func(&mut *store, name)?;
    Ok(func.call_async(&mut *store, ()).await?.0)
}

/// Reads every reader once, in order.
async fn read_all(store: &mut Store<()>, instance: &wasmtime::component::Instance) -> Vec<u32> {
    let mut seen = Vec::new();
    for name in READERS {
        seen.push(call(store, instance, name).await.unwrap());
    }
    seen
}

/// STATEFUL instantiated in a store of its own, and that store's fresh state.
struct Stateful {
    engine: Engine,
    component: Component,
    linker: Linker<()>,
    store: Store<()>,
    instance: wasmtime::component::Instance,
    fresh: wasmtime::FreshState,
}

async fn stateful() -> Stateful {
    let engine = engine();
    let component = Component::new(&engine, wat::parse_str(STATEFUL).unwrap()).unwrap();
    let linker = Linker::<()>::new(&engine);
    let mut store = store(&engine);
    let instance = linker.instantiate_async(&mut store, &component).await.unwrap();
    let fresh = store.capture_fresh_state().unwrap();
    Stateful {
        engine,
        component,
        linker,
        store,
        instance,
        fresh,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rewound_store_reads_as_freshly_instantiated() {
    let Stateful {
        engine,
        component,
        linker,
        mut store,
        instance,
        fresh,
    } = stateful().await;

    for round in 0..3 {
        let dirty: TypedFunc<(), ()> = instance.get_typed_func(&mut store, "dirty").unwrap();
        dirty.call_async(&mut store, ()).await.unwrap();
        // Every kind of state really changed, so the checks below can fail.
        assert_eq!(read_all(&mut store, &instance).await, DIRTIED, "round {round}: dirtied");
        store.rewind(&fresh).unwrap();
        assert_eq!(read_all(&mut store, &instance).await, FRESH, "round {round}: rewound");
        // The segments `dirty` dropped are whole again (reading a dropped one traps).
        assert_eq!(call(&mut store, &instance, "passive-elem").await.unwrap(), 2);
        assert_eq!(
            call(&mut store, &instance, "passive-data").await.unwrap(),
            u32::from(b'p')
        );
        // The page grown after the rewind reads zero, not what `dirty` wrote there.
        assert_eq!(call(&mut store, &instance, "grown-word").await.unwrap(), 0);
        store.rewind(&fresh).unwrap();
    }

    // The same readings from an instance created anew.
    let mut other = self::store(&engine);
    let new_instance = linker.instantiate_async(&mut other, &component).await.unwrap();
    assert_eq!(read_all(&mut other, &new_instance).await, FRESH);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trapped_store_is_not_rewound() {
    let Stateful {
        mut store,
        instance,
        fresh,
        ..
    } = stateful().await;
    let dirty: TypedFunc<(), ()> = instance.get_typed_func(&mut store, "dirty").unwrap();
    dirty.call_async(&mut store, ()).await.unwrap();
    // The dropped element segment makes this trap.
    assert!(call(&mut store, &instance, "passive-elem").await.is_err());
    let refused = store.rewind(&fresh).unwrap_err();
    assert!(format!("{refused:#}").contains("trapped"), "{refused:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_whose_instantiation_wrote_memory_cannot_be_captured() {
    // The start function writes a byte the memory image does not hold: resetting
    // to the image would not give back the state instantiation left.
    let writes_at_start = r#"
    (component
      (core module $m
        (memory 1)
        (func $start (i32.store8 (i32.const 5000) (i32.const 1)))
        (start $start))
      (core instance $i (instantiate $m)))
    "#;
    let engine = engine();
    let component = Component::new(&engine, wat::parse_str(writes_at_start).unwrap()).unwrap();
    let linker = Linker::<()>::new(&engine);
    let mut store = store(&engine);
    linker.instantiate_async(&mut store, &component).await.unwrap();
    let refused = store.capture_fresh_state().err().expect("refused");
    assert!(format!("{refused:#}").contains("wrote to linear memory"), "{refused:#}");
}
