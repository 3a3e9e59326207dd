//! `shakedown doctor`: which fault tiers this machine has (to be written).
