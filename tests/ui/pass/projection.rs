//! A projection over events of two aggregates, one with an `upcast_from` chain, with a
//! reset function: compiles without warnings.

#![deny(warnings)]

use eventsource::{Context, HandlerResult, Project, Projection, event};
use serde::{Deserialize, Serialize};

#[event(name = "user.registered")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredV1 {
    pub name: String,
}

#[event(name = "user.registered", version = 2, upcast_from = RegisteredV1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub name: String,
    pub email: Option<String>,
}

impl From<RegisteredV1> for Registered {
    fn from(v1: RegisteredV1) -> Self {
        Registered { name: v1.name, email: None }
    }
}

#[event(name = "order.placed")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub total: u64,
}

#[derive(Default, Projection)]
#[projection(name = "dashboard", version = 3, events(Registered, OrderPlaced), reset = Self::clear)]
pub struct Dashboard {
    users: u64,
    revenue: u64,
}

impl Dashboard {
    fn clear(&mut self, _: &mut Context<'_>) -> HandlerResult {
        *self = Dashboard::default();
        Ok(())
    }
}

impl Project<Registered> for Dashboard {
    fn project(&mut self, _: &Registered, _: &mut Context<'_>) -> HandlerResult {
        self.users += 1;
        Ok(())
    }
}

impl Project<OrderPlaced> for Dashboard {
    fn project(&mut self, e: &OrderPlaced, _: &mut Context<'_>) -> HandlerResult {
        self.revenue += e.total;
        Ok(())
    }
}

fn main() {
    assert_eq!(<Dashboard as Projection>::NAME, "dashboard");
    assert_eq!(<Dashboard as Projection>::VERSION, 3);
    assert_eq!(Dashboard::event_types(), ["user.registered", "order.placed"]);
    let d = Dashboard::default();
    assert_eq!((d.users, d.revenue), (0, 0));
}
