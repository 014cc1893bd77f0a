use eventsource::Aggregate;

#[derive(Default, Aggregate)]
#[aggregate(name = "account", events())]
pub struct Account;

fn main() {}
