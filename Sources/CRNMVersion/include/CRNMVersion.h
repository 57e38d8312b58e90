#pragma once
/// The rnm version string, injected from the VERSION file by Package.swift.
const char *rnm_version(void);
