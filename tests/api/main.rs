//! Integration tests: the real bridge, in-process on port 0, against stateful fakes of Authentik and Outline
//! that follow ../shared/contracts/. Assertions are on the fakes' final state and call logs.

mod helpers;

mod authentik_push;
mod blueprint_mapping;
mod cli;
mod faults;
mod hostile;
mod reconcile;
mod signin;
