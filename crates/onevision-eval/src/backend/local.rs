//! In-process generation with the engine's greedy path.
