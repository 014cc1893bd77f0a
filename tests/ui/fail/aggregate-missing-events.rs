use eventsource::Aggregate;

#[derive(Default, Aggregate)]
#[aggregate(name = "account")]
pub struct Account;

fn main() {
    let _ = <Account as Aggregate>::NAME;
}
