//! Importing policies written for other products into Picket's policy language.

pub mod gateway;
