"""The hardware side of the flow: FPGA boards and their capacities (``boards``), resource and latency estimates
(``resources`` over ``estimate`` + ``calibration``, ``vendor`` HLS reports, ``yosys`` open synthesis), and the
da4ml RTL of a model (``rtl``, traced layer by layer in ``rtl_trace``) simulated with Verilator or Icarus.
``yosys_calibration.json`` is the shipped calibration of the analytic LUT estimate against yosys."""
