//! `mpkit tour`: each mechanism in a few narrated lines, between real
//! processes, in the order a Python `multiprocessing` tutorial teaches them:
//! processes, pipes, queues, shared memory, signals, locks, then the OS
//! mechanisms (named pipes, message queues, sockets), a pool that survives
//! a killed worker, and last a queue on a Redis stream (when `redis-server`
//! is installed) that redelivers what a killed consumer held.

use std::error::Error;
use std::time::Duration;

use mpkit::codec::Json;
use mpkit::codec::Pickle;
use mpkit::msgq::{Selector, SysvQueue};
use mpkit::net::{Client, Listener, NetError};
use mpkit::os::{Fifo, Open};
use mpkit::pool::TaskError;
use mpkit::process::ProcessState;
use mpkit::process::{Builder, JoinError, current_process, parent_process};
use mpkit::queue::{GetTimeoutError, JoinableQueue, Queue, TryPutError};
use mpkit::redis_queue::RedisQueue;
use mpkit::shm::{Array, RawValue, SharedMemory, Value};
use mpkit::signal::{self, Signal};
use mpkit::sync::{Barrier, Event, Lock, Semaphore};
use mpkit::{Connection, Pool, Process, RecvError};
use mpkit_bench::redis_server::{self, RedisServer};
use serde::{Deserialize, Serialize};

type Result<T = ()> = std::result::Result<T, Box<dyn Error>>;

pub fn run() -> Result {
    println!("mpkit tour: every mechanism between real processes\n");
    processes()?;
    pipe_one_way()?;
    pipe_duplex()?;
    pipe_errors()?;
    queues()?;
    shared_memory()?;
    signals()?;
    locks_and_semaphores()?;
    named_pipes()?;
    message_queues()?;
    sockets()?;
    pool()?;
    redis_stream()?;
    crate::tour_redis_pool::redis_pool()?;
    println!("\ntour finished: every child was joined, nothing was left behind");
    Ok(())
}

fn section(title: &str) {
    println!("== {title}");
}

/// A worker: reports who it is and squares its argument.
fn square(x: u64) -> (String, i32, u64) {
    let me = current_process();
    (me.name().to_string(), me.pid(), x * x)
}

fn processes() -> Result {
    section("1. Processes (multiprocessing.Process)");
    let me = current_process();
    println!("parent: {} (pid {})", me.name(), me.pid());
    let workers: Vec<_> = (1..=3u64)
        .map(|x| Process::spawn(square, x))
        .collect::<std::result::Result<_, _>>()?;
    for w in workers {
        let (name, pid, sq) = w.join()?;
        println!("  {name} (pid {pid}) returned {sq}");
    }
    let named = Builder::new().name("greeter").spawn(
        |greeting: String| {
            let parent = parent_process().expect("spawned by mpkit");
            format!(
                "{greeting} from {} to {} (pid {})",
                current_process().name(),
                parent.name(),
                parent.pid()
            )
        },
        "hello".to_string(),
    )?;
    println!("  {}", named.join()?);

    // A panic on purpose, to show what join() reports. The child silences
    // its panic hook first: the default hook's message (and, under
    // RUST_BACKTRACE, a backtrace) would read as a failure of the tour.
    let panics = Process::spawn(
        |n: u32| -> u32 {
            std::panic::set_hook(Box::new(|_| {}));
            panic!("worker refused {n}")
        },
        7,
    )?;
    match panics.join() {
        Err(JoinError::Panicked { message, .. }) => println!(
            "  a child that panics on purpose (its panic hook silenced): \
             join() says it panicked: {message:?}"
        ),
        other => return Err(format!("expected a panic, got {other:?}").into()),
    }
    let mut sleeper = Process::spawn(|s: u64| std::thread::sleep(Duration::from_secs(s)), 600)?;
    println!(
        "  sleeper pid {} alive: {}",
        sleeper.pid(),
        sleeper.is_alive()
    );
    sleeper.kill()?;
    let ended = sleeper.join_timeout(Duration::from_secs(10));
    println!(
        "  after kill(): {}, exitcode {:?} (negative signal number, as in Python)",
        ended.err().map(|e| e.to_string()).unwrap_or_default(),
        sleeper.exitcode()
    );
    println!();
    Ok(())
}

/// The child of Python's classic `Pipe` example: closes its sending end and
/// prints until end of file.
fn sub_process((parent_pid, (mut out_pipe, in_pipe)): (u32, (Connection, Connection))) {
    println!(
        "  child {} started by parent {parent_pid}",
        std::process::id()
    );
    in_pipe.close();
    loop {
        match out_pipe.recv::<u32>() {
            Ok(msg) => println!("  out pipe : {msg}"),
            Err(RecvError::Eof) => break,
            Err(e) => panic!("{e}"),
        }
    }
    println!("  child: end of file, every sender closed its end");
}

fn pipe_one_way() -> Result {
    section("2. Pipe (multiprocessing.Pipe: one process writes, the other reads until EOFError)");
    let (out_pipe, in_pipe) = mpkit::pipe(false)?;
    let child = Process::spawn(
        sub_process,
        (
            std::process::id(),
            (out_pipe.try_clone()?, in_pipe.try_clone()?),
        ),
    )?;
    out_pipe.close();
    let mut in_pipe = in_pipe;
    for i in 0..10u32 {
        in_pipe.send(&i)?;
    }
    in_pipe.close();
    child.join()?;
    println!("  parent: child joined\n");
    Ok(())
}

#[derive(Serialize, Deserialize, Debug)]
struct Order {
    id: u32,
    item: String,
    qty: u16,
}

fn pipe_duplex() -> Result {
    section("3. Duplex Pipe: typed request/reply, JSON, and a Connection sent over a Connection");
    let (mut here, there) = mpkit::pipe(true)?;
    let server = Process::spawn(
        |mut conn: Connection| {
            // Requests arrive as structs; replies go back the same way.
            while let Ok(order) = conn.recv::<Order>() {
                let reply = format!(
                    "order {} accepted: {} x {}",
                    order.id, order.qty, order.item
                );
                conn.send(&reply).expect("reply");
            }
            // Then a Connection arrives over this Connection.
            let mut extra: Connection<Json> = match conn.recv() {
                Ok(c) => c,
                Err(_) => return,
            };
            extra
                .send(&serde_json::json!({"message": "hi over a passed connection", "n": [1, 2]}))
                .expect("json");
        },
        there,
    )?;
    for (id, item) in [(1, "tea"), (2, "cake")] {
        here.send(&Order {
            id,
            item: item.into(),
            qty: 2,
        })?;
        println!(
            "  parent sent Order #{id}; child replied {:?}",
            here.recv::<String>()?
        );
    }
    here.send_bytes(b"not an order")?; // ends the child's loop: a decode error
    let (mine, theirs) = Connection::<Json>::pair(true)?;
    here.send(&theirs)?;
    drop(theirs);
    let mut mine = mine;
    let json = mine.recv_bytes()?;
    println!(
        "  child answered over the passed connection, in JSON: {}",
        String::from_utf8_lossy(&json)
    );
    server.join()?;
    println!();
    Ok(())
}

fn pipe_errors() -> Result {
    section("4. What errors look like");
    let (mut a, mut b) = mpkit::pipe(true)?;
    a.send(&"a string")?;
    match b.recv::<Order>() {
        Err(e) => println!("  recv::<Order>() of a string: {e}"),
        Ok(o) => return Err(format!("decoded {o:?}").into()),
    }
    a.send_bytes(&[0u8; 4096])?;
    println!(
        "  recv_bytes_max(100) of 4096 bytes: {}",
        b.recv_bytes_max(100).unwrap_err()
    );
    println!(
        "  ...and the message is still there: {} bytes",
        b.recv_bytes()?.len()
    );
    let child = Process::spawn(
        |c: Connection| -> () { std::process::exit(if c.readable() { 3 } else { 4 }) },
        a,
    )?;
    println!(
        "  a child that exits with code 3: {}",
        child.join().unwrap_err()
    );
    println!(
        "  recv() after the peer's process ended: {}",
        b.recv::<u8>().unwrap_err()
    );
    Ok(())
}

fn shared_memory() -> Result {
    section("6. Shared memory (multiprocessing.Value, Array, strings; named blocks)");
    let num = Value::new(0.0f64)?;
    let arr = Array::new(&[1i32, 2, 3])?;
    let text = Array::<u8>::zeroed(32)?;
    text.set_value(b"hello")?;
    let child = Process::spawn(
        |(num, arr, text): (Value<f64>, Array<i32>, Array<u8>)| {
            let seen = (
                arr.to_vec().expect("lock"),
                text.to_string_lossy().expect("lock"),
            );
            num.set(std::f64::consts::PI).expect("lock");
            arr.set(1, 20).expect("index 1");
            text.set_value(b"hello from the child").expect("fits");
            seen
        },
        (num.try_clone()?, arr.try_clone()?, text.try_clone()?),
    )?;
    let (arr_seen, text_seen) = child.join()?;
    println!(
        "  child saw arr = {arr_seen:?} and {text_seen:?}, then wrote num, arr[1] and the string"
    );
    println!(
        "  parent now sees num = {}, arr = {:?}, {:?}",
        num.get()?,
        arr.to_vec()?,
        text.to_string_lossy()?
    );

    let counter = Value::new(0i64)?;
    let adders: Vec<_> = (0..4)
        .map(|_| {
            Process::spawn(
                |v: Value<i64>| {
                    for _ in 0..10_000 {
                        *v.lock().expect("lock") += 1;
                    }
                },
                counter.try_clone()?,
            )
            .map_err(Box::<dyn Error>::from)
        })
        .collect::<Result<_>>()?;
    for a in adders {
        a.join()?;
    }
    println!(
        "  4 processes x 10000 locked increments of a Value<i64>: {}",
        counter.get()?
    );

    let block = SharedMemory::create_unique(64)?;
    block.write(0, b"named block")?;
    let name = block.name().expect("named").to_string();
    let reader = Process::spawn(
        |name: String| {
            let b = SharedMemory::open(&name).expect("open by name");
            let mut buf = [0u8; 11];
            b.read(0, &mut buf).expect("read");
            String::from_utf8_lossy(&buf).into_owned()
        },
        name.clone(),
    )?;
    println!(
        "  a child opened /dev/shm/{name} by name and read {:?}",
        reader.join()?
    );
    match Lock::open(&name) {
        Err(e) => println!("  opening that block as a Lock: {e}"),
        Ok(_) => return Err("a raw block opened as a Lock".into()),
    }
    println!();
    Ok(())
}

fn locks_and_semaphores() -> Result {
    section("8. Locks and semaphores (Lock, Semaphore P/V, mutual exclusion; crash safety)");
    let lock = Lock::new()?;
    let held = Event::new()?;
    let holder = Process::spawn(
        |(lock, held): (Lock, Event)| {
            let _g = lock.lock().expect("lock");
            held.set();
            std::thread::sleep(Duration::from_secs(600));
        },
        (lock.try_clone()?, held.try_clone()?),
    )?;
    held.wait(Some(Duration::from_secs(10)))?;
    println!(
        "  child {} holds the lock; try_lock() here: {}",
        holder.pid(),
        lock.try_lock().unwrap_err()
    );
    holder.kill()?;
    let _ = holder.join();
    let g = lock.lock_timeout(Duration::from_secs(10))?;
    println!(
        "  after SIGKILL of the holder, lock() succeeds and owner_died() = {}",
        g.owner_died()
    );
    drop(g);

    let sem = Semaphore::new(0)?;
    let done = RawValue::new(0u32)?;
    let consumer = Process::spawn(
        |(sem, done): (Semaphore, RawValue<u32>)| {
            for _ in 0..3 {
                sem.acquire().expect("P");
                done.atomic()
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        },
        (sem.try_clone()?, done.try_clone()?),
    )?;
    for _ in 0..3 {
        sem.release()?;
    }
    consumer.join()?;
    println!(
        "  semaphore: 3 V operations here let a child pass 3 P operations ({} done)",
        done.get()
    );

    let barrier = Barrier::new(3)?;
    let parties: Vec<_> = (0..2)
        .map(|_| {
            Process::spawn(
                |b: Barrier| b.wait().expect("barrier"),
                barrier.try_clone()?,
            )
            .map_err(Box::<dyn Error>::from)
        })
        .collect::<Result<_>>()?;
    let mine = barrier.wait()?;
    let mut all = vec![mine];
    for p in parties {
        all.push(p.join()?);
    }
    all.sort();
    println!("  barrier for 3 processes: all passed, arrival indexes {all:?}");
    println!();
    Ok(())
}

/// A getter as in Python's `multiprocessing.Queue` examples: takes values
/// until none comes for a while.
fn getter((name, q): (String, Queue<f64>)) -> Vec<f64> {
    let mut got = Vec::new();
    loop {
        match q.get_timeout(Duration::from_millis(300)) {
            Ok(v) => {
                println!("  {name}: get value {v:.6}");
                got.push(v);
            }
            Err(GetTimeoutError::Timeout) => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

fn queues() -> Result {
    section("5. Queue (multiprocessing.Queue: several putters and getters, Full and Empty)");
    let q: Queue<f64> = Queue::new(2)?;
    let get = Process::spawn(getter, ("getter".to_string(), q.try_clone()?))?;
    let put = Process::spawn(
        |q: Queue<f64>| {
            for i in 0..5 {
                let v = (i as f64 * 0.618_034).fract();
                q.put(v).expect("put");
                println!("  putter: put value {v:.6}");
            }
        },
        q.try_clone()?,
    )?;
    put.join()?;
    let got = get.join()?;
    println!(
        "  the getter received all {} values in order, then timed out (Python's Empty)",
        got.len()
    );
    q.put(1.0).map_err(|e| e.to_string())?;
    q.put(2.0).map_err(|e| e.to_string())?;
    match q.try_put(3.0) {
        Err(TryPutError::Full(v)) => {
            println!("  put_nowait on a full Queue(2): Full, and the value {v} is handed back")
        }
        other => return Err(format!("expected Full, got {other:?}").into()),
    }
    q.get()?;
    q.get()?;
    println!(
        "  get_nowait on an empty queue: {}",
        q.try_get().unwrap_err()
    );

    let jobs: JoinableQueue<u32> = JoinableQueue::new(0)?;
    let workers: Vec<_> = (0..2)
        .map(|_| {
            Process::spawn(
                |q: JoinableQueue<u32>| {
                    let mut n = 0;
                    while q.get().is_ok() {
                        n += 1;
                        q.task_done().expect("task_done");
                    }
                    n
                },
                jobs.try_clone()?,
            )
            .map_err(Box::<dyn Error>::from)
        })
        .collect::<Result<_>>()?;
    for job in 0..20 {
        jobs.put(job).map_err(|e| e.to_string())?;
    }
    jobs.join_timeout(Duration::from_secs(10))?;
    jobs.close();
    let counts: Vec<u32> = workers
        .into_iter()
        .map(|w| w.join())
        .collect::<std::result::Result<_, _>>()?;
    println!("  JoinableQueue: 2 workers did {counts:?} of 20 jobs; join_timeout() returned Ok");
    println!();
    Ok(())
}

fn sockets() -> Result {
    section(
        "11. Sockets (multiprocessing.connection Listener/Client with an auth key, Python's wire protocol)",
    );
    let dir = std::env::temp_dir().join(format!("mpkit-tour-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = sockets_in(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn sockets_in(dir: &std::path::Path) -> Result {
    let address = dir.join("tour.sock").to_string_lossy().into_owned();
    let listener = Listener::builder()
        .authkey(b"tour key")
        .handshake_timeout(Duration::from_secs(5))
        .bind(&address)?;
    println!("  listening on {address} (mode 0600, HMAC challenge-response both ways)");
    let good = Process::spawn(
        |address: String| {
            let mut c = Client::connect(&address, Some(b"tour key")).expect("right key");
            c.send(&"hello with the right key").expect("send");
            c.recv::<String>().expect("reply")
        },
        address.clone(),
    )?;
    let mut conn = listener.accept_timeout(Duration::from_secs(10))?;
    let said: String = conn.recv()?;
    conn.send(&format!("server heard {said:?}"))?;
    println!("  a child with the right key: {}", good.join()?);
    let bad = Process::spawn(
        |address: String| {
            Client::connect(&address, Some(b"wrong key"))
                .err()
                .map(|e| e.to_string())
        },
        address.clone(),
    )?;
    match listener.accept_timeout(Duration::from_secs(10)) {
        Err(NetError::Authentication(why)) => {
            println!("  a child with a wrong key: the server says {why:?}")
        }
        other => return Err(format!("expected an authentication error, got {other:?}").into()),
    }
    println!(
        "  ...and the child says {:?}",
        bad.join()?.unwrap_or_default()
    );
    let python = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys\nfrom multiprocessing.connection import Client\nc = Client(sys.argv[1], authkey=b'tour key')\nc.send({'from': 'python', 'n': [1, 2, 3]})\nprint(c.recv())",
            &address,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn();
    match python {
        Err(_) => println!("  (python3 not found: skipping the Python client)"),
        Ok(mut py) => {
            #[derive(Deserialize)]
            struct FromPython {
                from: String,
                n: Vec<i64>,
            }
            let mut conn = listener
                .accept_timeout(Duration::from_secs(10))?
                .with_codec::<Pickle>();
            let msg: FromPython = conn.recv()?;
            conn.send(&format!("sum is {}", msg.n.iter().sum::<i64>()))?;
            let mut out = String::new();
            std::io::Read::read_to_string(py.stdout.as_mut().ok_or("no stdout")?, &mut out)?;
            py.wait()?;
            println!(
                "  a Python standard-library client ({}) sent n = {:?}; it printed {:?}",
                msg.from,
                msg.n,
                out.trim()
            );
        }
    }
    Ok(())
}

fn signals() -> Result {
    section("7. Signals (kill -l, kill -SIG PID, os.kill, signal handlers)");
    let listing = signal::kill_list();
    println!(
        "  kill -l (first line): {}",
        listing.lines().next().unwrap_or_default().trim()
    );
    // `ready`: handlers installed; `handled`: SIGUSR1 seen. Waiting for it
    // before SIGTERM keeps the order: two signals pending at once may be
    // reported in either order.
    let (ready, handled) = (Event::new()?, Event::new()?);
    let child = Process::spawn(
        |(ready, handled): (Event, Event)| {
            let rx = signal::channel(&[Signal::USR1, Signal::TERM]).expect("handlers");
            ready.set();
            let mut got = Vec::new();
            while let Ok(s) = rx.recv_timeout(Duration::from_secs(10)) {
                got.push(s.name());
                if s == Signal::TERM {
                    break;
                }
                handled.set();
            }
            got
        },
        (ready.try_clone()?, handled.try_clone()?),
    )?;
    ready.wait(Some(Duration::from_secs(10)))?;
    signal::send(child.pid(), Signal::USR1)?;
    handled.wait(Some(Duration::from_secs(10)))?;
    child.send_signal(Signal::TERM)?;
    println!(
        "  a child with handlers received {:?}, then exited cleanly",
        child.join()?
    );
    let worker = Process::spawn(|s: u64| std::thread::sleep(Duration::from_secs(s)), 60)?;
    worker.suspend()?;
    while worker.state() == ProcessState::Running {
        std::thread::yield_now();
    }
    println!("  SIGSTOP: the worker is {:?}", worker.state());
    worker.resume()?;
    while worker.state() != ProcessState::Running {
        std::thread::yield_now();
    }
    println!("  SIGCONT: the worker is {:?}", worker.state());
    worker.kill()?;
    println!("  SIGKILL: {}", worker.join().unwrap_err());
    match signal::flag(Signal::KILL) {
        Err(e) => println!("  installing a handler for SIGKILL: {e}"),
        Ok(_) => return Err("SIGKILL was caught".into()),
    }
    println!();
    Ok(())
}

fn named_pipes() -> Result {
    section("9. Named pipes (os.mkfifo, unrelated processes)");
    let path = std::env::temp_dir().join(format!("mpkit-tour-{}.fifo", std::process::id()));
    Fifo::create(&path, 0o600)?;
    let p = path.to_string_lossy().into_owned();
    let writer = Process::spawn(
        |p: String| {
            use std::io::Write;
            let mut w =
                Fifo::open_writer(&p, Open::Timeout(Duration::from_secs(10))).expect("open");
            writeln!(w, "a line through the FIFO").expect("write");
        },
        p.clone(),
    )?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut Fifo::open_reader(&p, Open::Timeout(Duration::from_secs(10)))?,
        &mut text,
    )?;
    writer.join()?;
    println!(
        "  {} (mode 0600): read {:?} until the writer closed",
        path.display(),
        text.trim()
    );
    match Fifo::open_writer(&p, Open::NonBlocking) {
        Err(e) => println!("  a non-blocking writer with no reader: {e}"),
        Ok(_) => return Err("opened a FIFO with no reader".into()),
    }
    Fifo::remove(&path)?;
    println!();
    Ok(())
}

fn message_queues() -> Result {
    section(
        "10. Message queues (System V msgsnd/msgrcv: typed messages, receivers select by type)",
    );
    let q = SysvQueue::private(0o600)?;
    for (t, text) in [(3, "log"), (2, "job A"), (1, "alarm"), (2, "job B")] {
        q.send(t, text.as_bytes())?;
    }
    let jobs = Process::spawn(
        |q: SysvQueue| {
            (0..2)
                .map(|_| {
                    String::from_utf8_lossy(&q.recv(Selector::Type(2)).expect("recv").1)
                        .into_owned()
                })
                .collect::<Vec<_>>()
        },
        q,
    )?;
    println!("  System V queue {}: sent types 3, 2, 1, 2", q.id());
    println!("  a child taking only type 2 got {:?}", jobs.join()?);
    let (t, text) = q.recv(Selector::UpTo(3))?;
    println!(
        "  taking the lowest type first: type {t}, {:?}",
        String::from_utf8_lossy(&text)
    );
    match q.send(1, &vec![0; SysvQueue::max_message_size() + 1]) {
        Err(e) => println!("  a message over the limit: {e}"),
        Ok(()) => return Err("an oversized message was accepted".into()),
    }
    q.remove()?;
    println!();
    Ok(())
}

/// A pool task that SIGKILLs its own worker on item 3, the first time it
/// runs (the `Event`, shared by every item, remembers that it did); it
/// returns the square and the pid of the worker that ran it.
fn square_or_die((x, killed): (u64, Event)) -> (u64, i32) {
    let me = current_process().pid();
    if x == 3 && !killed.is_set() {
        killed.set();
        signal::send(me, Signal::KILL).expect("SIGKILL to itself");
    }
    (x * x, me)
}

fn pool() -> Result {
    section("12. Pool (multiprocessing.Pool: a worker killed in the middle of a map)");
    let items = |killed: &Event| -> Result<Vec<(u64, Event)>> {
        Ok((0..6)
            .map(|x| killed.try_clone().map(|k| (x, k)))
            .collect::<std::result::Result<_, _>>()?)
    };
    let pool = Pool::new(2)?;
    let outcomes = pool.map_outcomes_chunked(square_or_die, items(&Event::new()?)?, 1);
    println!("  Pool(2).map over 0..6, one item per chunk; the task for 3 SIGKILLs its own worker");
    let shown: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            Ok((sq, _)) => sq.to_string(),
            Err(_) => "(died)".to_string(),
        })
        .collect();
    println!("  results: [{}]", shown.join(", "));
    match &outcomes[3] {
        Err(e @ TaskError::WorkerDied { .. }) => println!("  item 3: {e}"),
        other => return Err(format!("expected WorkerDied for item 3, got {other:?}").into()),
    }
    println!(
        "  Python's own Pool waits for ever here (CPython gh-66587); this one knows which\n  \
         worker held which task, fails just that one, and starts a replacement"
    );
    let pool = Pool::builder().processes(2).retries(1).build()?;
    let results = pool.map_chunked(square_or_die, items(&Event::new()?)?, 1)?;
    let squares: Vec<u64> = results.iter().map(|r| r.0).collect();
    println!(
        "  with retries(1): {squares:?}; item 3 ran again on worker pid {}",
        results[3].1
    );
    println!();
    Ok(())
}

/// A Redis consumer: takes one job, says so, and never acknowledges it
/// (it is killed holding it).
fn take_and_hold((q, took): (RedisQueue<String>, Event)) {
    let job = q.get_delivery_timeout(Duration::from_secs(10));
    took.set();
    drop(job);
    loop {
        std::thread::park();
    }
}

/// A Redis consumer: takes `n` jobs, acknowledging each, and returns them
/// with their delivery counts.
fn take_n((q, n): (RedisQueue<String>, usize)) -> Vec<(String, u64)> {
    (0..n)
        .map(|_| {
            let d = q.get_delivery_timeout(Duration::from_secs(10)).unwrap();
            q.task_done().unwrap();
            (d.value, d.deliveries)
        })
        .collect()
}

fn redis_stream() -> Result {
    section("13. A queue on a Redis stream (a consumer killed holding a job)");
    if !redis_server::installed() {
        println!("  skipped: redis-server is not installed (scripts/redis-server installs it)\n");
        return Ok(());
    }
    let server = RedisServer::try_start()?;
    println!(
        "  a private redis-server (pid {}) at {}",
        server.pid().unwrap_or_default(),
        server.url()
    );
    let vt = Duration::from_millis(500);
    let q: RedisQueue<String> = RedisQueue::builder(&server.url(), "tour")
        .visibility_timeout(vt)
        .open()?;
    q.put_many((1..=3).map(|i| format!("job {i}")).collect())?;
    println!("  put 3 jobs; an unacknowledged job is delivered again after {vt:?}");
    let took = Event::new()?;
    let mut doomed = Process::spawn(take_and_hold, (q.try_clone()?, took.try_clone()?))?;
    if !took.wait(Some(Duration::from_secs(10)))? {
        return Err("the first consumer took no job".into());
    }
    doomed.kill()?;
    // Reaped, so it is gone before the next consumer looks.
    let _ = doomed.join_timeout(Duration::from_secs(10));
    println!(
        "  consumer pid {} took a job and was SIGKILLed before task_done; pending: {}",
        doomed.pid(),
        q.pending()?
    );
    let other = Process::spawn(take_n, (q.try_clone()?, 3))?;
    let other_pid = other.pid();
    let mut got = other.join()?;
    got.sort();
    let shown: Vec<String> = got
        .iter()
        .map(|(job, n)| format!("{job} (delivery {n})"))
        .collect();
    println!("  consumer pid {other_pid} got {}", shown.join(", "));
    q.join_timeout(Duration::from_secs(10))?;
    println!("  join_timeout() returned Ok: every job acknowledged");
    drop(q);
    let pid = server.pid().unwrap_or_default();
    drop(server);
    println!("  redis-server (pid {pid}) stopped");
    println!();
    Ok(())
}
