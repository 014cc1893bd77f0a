//! The given/when/then harness (`eventsource::testing`) on the bank domain.

use eventsource::testing::given;
use eventsource_tests::{
    Account, AccountEvent, AccountOpened, BankError, MoneyDeposited, MoneyWithdrawn,
};

fn opened() -> AccountEvent {
    AccountOpened {
        owner: "ann".into(),
        currency: "EUR".into(),
    }
    .into()
}

#[test]
fn expected_events_pass_and_return_the_new_state() {
    let state = given::<Account>([opened(), MoneyDeposited { amount: 10 }.into()])
        .when(|a| a.withdraw(4))
        .then_expect_events(MoneyWithdrawn { amount: 4 });
    assert_eq!(state.balance, 6);
}

#[test]
fn an_expected_error_passes() {
    given::<Account>([opened()])
        .when(|a| a.withdraw(1))
        .then_expect_error(&BankError::InsufficientFunds { balance: 0 });
}

#[test]
fn handlers_deciding_nothing_expect_no_events() {
    given::<Account>([opened()])
        .when(|_| Ok::<_, BankError>(None::<MoneyDeposited>))
        .then_expect_events(());
}

#[test]
#[should_panic(expected = "the handler decided other events")]
fn other_events_fail_the_test() {
    given::<Account>([opened()])
        .when(|a| a.deposit(5))
        .then_expect_events(MoneyDeposited { amount: 6 });
}

#[test]
#[should_panic(expected = "the handler failed with NotOpen")]
fn an_unexpected_error_fails_the_test() {
    given::<Account>(())
        .when(|a| a.deposit(5))
        .then_expect_events(MoneyDeposited { amount: 5 });
}

#[test]
#[should_panic(expected = "the handler failed with another error")]
fn another_error_fails_the_test() {
    given::<Account>(())
        .when(|a| a.withdraw(5))
        .then_expect_error(&BankError::AlreadyOpen);
}

#[test]
fn given_takes_what_a_handler_returns() {
    let opened = AccountOpened {
        owner: "ann".into(),
        currency: "EUR".into(),
    };
    // A tuple mixing a single event, a Vec and an array.
    let state = given::<Account>((
        opened.clone(),
        vec![MoneyDeposited { amount: 10 }, MoneyDeposited { amount: 5 }],
        [MoneyWithdrawn { amount: 3 }],
    ))
    .state()
    .balance;
    assert_eq!(state, 12);
    // One event alone.
    assert!(given::<Account>(opened).state().open);
    // Nothing.
    assert!(!given::<Account>(()).state().open);
}

#[test]
fn handlers_that_cannot_fail_return_events_alone() {
    let state = given::<Account>([opened()])
        .when(|_| (MoneyDeposited { amount: 2 }, MoneyDeposited { amount: 3 }))
        .then_expect_events([MoneyDeposited { amount: 2 }, MoneyDeposited { amount: 3 }]);
    assert_eq!(state.balance, 5);
    let then = given::<Account>([opened()]).when(|_| None::<MoneyDeposited>);
    let outcome: &Result<Vec<AccountEvent>, std::convert::Infallible> = then.outcome();
    assert_eq!(outcome.as_ref().ok().map(Vec::len), Some(0));
}
