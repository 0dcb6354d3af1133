//! Policy engine (see issue 3). Placeholder until the engine lands.
