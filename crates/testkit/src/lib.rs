//! placeholder-free stub replaced below
