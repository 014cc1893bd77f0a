use eventsource::{Context, HandlerResult, Project, Projection};

pub struct NotAnEvent;

#[derive(Projection)]
#[projection(events(NotAnEvent))]
pub struct Balances;

impl Project<NotAnEvent> for Balances {
    fn project(&mut self, _: &NotAnEvent, _: &mut Context<'_>) -> HandlerResult {
        Ok(())
    }
}

fn main() {}
