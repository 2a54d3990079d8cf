package configure

// SDID is sdID, for the tests that send rsyslog messages as the daemon does.
const SDID = sdID
