use shakedown_check::linear::{check, model_by_name, Budget};
fn main() {
    let f = std::env::var("F").unwrap();
    let m = std::env::var("M").unwrap_or("cas-register".into());
    let text = std::fs::read_to_string(&f).unwrap();
    let (h, _) = shakedown_history::import::read_any(&text, None, "x").unwrap();
    let model = model_by_name(&m).unwrap();
    let n: usize = std::env::var("N").map(|s| s.parse().unwrap()).unwrap_or(20000);
    let t = std::time::Instant::now();
    for _ in 0..n { std::hint::black_box(check(&h, model.as_ref(), &Budget::default())); }
    println!("{:?} per check", t.elapsed() / n as u32);
}
