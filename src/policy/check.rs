//! `picket check`: validate policies and run their tests.
