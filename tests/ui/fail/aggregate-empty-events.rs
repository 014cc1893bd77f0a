use eventsource::Aggregate;

#[derive(Default, Aggregate)]
#[aggregate(events())]
pub struct Account;

fn main() {}
