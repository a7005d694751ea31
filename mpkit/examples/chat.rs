//! A chat room over TCP on loopback: one server, several mpkit clients in
//! their own processes. The server uses `wait` on its listener and every
//! client connection at once, and relays each line to the other clients.
//!
//! ```text
//! cargo run --example chat
//! ```

use std::time::Duration;

use mpkit::net::{Client, Listener, Waitable, wait};
use mpkit::{Connection, Process};

const KEY: &[u8] = b"chat key";

/// A client: says its lines, then reads what the others said until the
/// server hangs up.
fn chatter((address, name, lines): (String, String, Vec<String>)) -> Vec<String> {
    let mut conn = Client::connect(&address, Some(KEY)).expect("connect");
    conn.send(&name).expect("hello");
    for line in &lines {
        conn.send(line).expect("say");
    }
    conn.send(&"/bye").expect("bye");
    let mut heard = Vec::new();
    while let Ok(line) = conn.recv::<String>() {
        heard.push(line);
    }
    heard
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = Listener::bind("127.0.0.1:0", Some(KEY))?;
    let address = listener.address().to_string();
    println!("server listening on {address}");
    let people = [
        ("ada", vec!["hello all", "anyone here?"]),
        ("bob", vec!["hi ada"]),
        ("cy", vec!["hey", "bye now"]),
    ];
    let clients: Vec<_> = people
        .iter()
        .map(|(name, lines)| {
            let lines = lines.iter().map(|l| l.to_string()).collect();
            Process::spawn(chatter, (address.clone(), name.to_string(), lines))
        })
        .collect::<Result<_, _>>()?;

    let mut members: Vec<(String, Connection)> = Vec::new();
    let mut accepted = 0;
    let mut finished = 0;
    while finished < people.len() {
        let mut objects: Vec<&dyn Waitable> = vec![&listener];
        objects.extend(members.iter().map(|(_, c)| c as &dyn Waitable));
        let ready = wait(&objects, Some(Duration::from_secs(30)))?;
        if ready.is_empty() {
            return Err("nobody said anything for 30 s".into());
        }
        if ready.contains(&0) && accepted < people.len() {
            let mut conn = listener.accept()?;
            let name: String = conn.recv()?;
            println!("server: {name} joined");
            members.push((name, conn));
            accepted += 1;
            continue;
        }
        for &i in ready.iter().filter(|&&i| i > 0) {
            let line: String = match members[i - 1].1.recv() {
                Ok(l) => l,
                Err(_) => continue,
            };
            let who = members[i - 1].0.clone();
            if line == "/bye" {
                println!("server: {who} is done talking");
                finished += 1;
                continue;
            }
            println!("server: {who} says {line:?}");
            for (name, conn) in members.iter_mut().filter(|(n, _)| *n != who) {
                if conn.send(&format!("{who}: {line}")).is_err() {
                    println!("server: {name} left");
                }
            }
        }
    }
    drop(members); // hang up: every client's recv loop ends
    for (client, (name, _)) in clients.into_iter().zip(people.iter()) {
        let heard = client.join()?;
        println!("{name} heard {} lines: {heard:?}", heard.len());
    }
    Ok(())
}
