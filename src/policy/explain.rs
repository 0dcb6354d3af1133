//! `picket explain`: which rule decides a query, and why.
