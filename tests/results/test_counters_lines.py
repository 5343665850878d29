"""The human summary's counter lines: each device's deltas, what moved, and what could not be read."""
from loadgen.results.result import counters_lines


def nic(**stats) -> dict:
    base = {"rx_packets": 0, "tx_packets": 0, "rx_dropped": 0, "tx_dropped": 0, "rx_errors": 0, "tx_errors": 0}
    return {"statistics": base | stats}


def test_a_quiet_nic_says_so():
    assert counters_lines({"nics": {"eth0": nic(rx_packets=5, tx_packets=7)}, "disks": {}}) == [
        "  nic eth0: rx 5 packets, tx 7 packets; no drops or errors"]


def test_drops_errors_and_ena_allowances_that_moved_are_named():
    n = nic(rx_packets=10, rx_dropped=3, rx_missed_errors=2)
    n["driver"] = {"pps_allowance_exceeded": 4, "bw_in_allowance_exceeded": 0, "queue_0_tx_cnt": 99}
    (line,) = counters_lines({"nics": {"eth0": n}})
    assert line == "  nic eth0: rx 10 packets, tx 0 packets; rx_dropped 3, rx_missed_errors 2, pps_allowance_exceeded 4"


def test_disks_and_what_could_not_be_read():
    c = {"nics": {"veth0": {"missing_statistics": "/sys/class/net/veth0/statistics: No such file or directory"}},
         "disks": {"vda": {"stat": {"reads_completed": 12, "writes_completed": 3, "io_ms": 1500}},
                   "zram9": {"missing": "/sys/block/zram9/stat: No such file or directory"}}}
    assert counters_lines(c, " on 10.0.0.2") == [
        "  nic veth0 on 10.0.0.2: not read (/sys/class/net/veth0/statistics: No such file or directory)",
        "  disk vda on 10.0.0.2: 12 reads, 3 writes, busy 1.5 s",
        "  disk zram9 on 10.0.0.2: not read (/sys/block/zram9/stat: No such file or directory)"]
    assert counters_lines({"missing": "the agent sent none"}, " on h") == ["  counters on h: not read (the agent sent none)"]
    assert counters_lines(None) == [] and counters_lines({}) == []
