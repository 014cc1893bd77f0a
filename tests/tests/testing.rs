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
        .then_expect_events([MoneyWithdrawn { amount: 4 }.into()]);
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
        .then_expect_events([]);
}

#[test]
#[should_panic(expected = "the handler decided other events")]
fn other_events_fail_the_test() {
    given::<Account>([opened()])
        .when(|a| a.deposit(5))
        .then_expect_events([MoneyDeposited { amount: 6 }.into()]);
}

#[test]
#[should_panic(expected = "the handler failed with NotOpen")]
fn an_unexpected_error_fails_the_test() {
    given::<Account>([])
        .when(|a| a.deposit(5))
        .then_expect_events([MoneyDeposited { amount: 5 }.into()]);
}

#[test]
#[should_panic(expected = "the handler failed with another error")]
fn another_error_fails_the_test() {
    given::<Account>([])
        .when(|a| a.withdraw(5))
        .then_expect_error(&BankError::AlreadyOpen);
}
