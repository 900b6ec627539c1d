"""RxD calcium example: Ca influx (cachan.mod writes ica) -> rxd [Ca]i -> Ca-activated K (kca.mod reads cai)."""
