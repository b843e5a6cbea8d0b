// mvm_lring: a ring buffer of 16-bit entries for mvm_engine.sv (the int4 scale stream and the M = 1 residual
// stream), private to it. Computes nothing. Entries are kept in lines of 16 (32 bytes: the unit such a stream is
// requested in, so a stream always starts on a line), line L in bank L mod NB, each bank a RAM with one write
// port (per-entry write enables) and one registered read port.
// Write: up to WL consecutive lines (one port word) from any line, the entries with a set wmask bit.
// Read: the NB consecutive lines from rline (a window), registered at the edge where re is high; rdata holds
// them in window order (line rline first). Reading a line written at the same edge gives the old entries.
module mvm_lring #(
  parameter int ENTRIES = 512,   // a power of two, a multiple of 16 * NB
  parameter int NB = 8,          // banks, a power of two, >= 2 and >= WL
  parameter int WL = 2,          // lines per write
  parameter int LA = $clog2(ENTRIES / 16)
) (
  input  logic              clk,
  input  logic              we,
  input  logic [LA-1:0]     wline,
  input  logic [WL*256-1:0] wdata,
  input  logic [WL*16-1:0]  wmask,
  input  logic              re,
  input  logic [LA-1:0]     rline,
  output logic [NB*256-1:0] rdata
);
  localparam int D = ENTRIES / 16 / NB;         // lines per bank
  localparam int DA = (D > 1) ? $clog2(D) : 1;
  localparam int BA = (NB > 1) ? $clog2(NB) : 1;

  if ((ENTRIES & (ENTRIES - 1)) != 0 || (NB & (NB - 1)) != 0 || NB < 2 || WL > NB || D < 1) begin : g_bad
    $error("mvm_lring: unsupported parameters");
  end

  // the written lines and masks rotated to bank order (bank b takes line wline + ((b - wline) mod NB))
  logic [NB*256-1:0] wrot;
  logic [NB*16-1:0]  mrot;
  logic [BA-1:0]     wsh, rsh;
  assign wsh = BA'(wline);
  assign rsh = BA'(rline);
  /* verilator lint_off UNUSEDSIGNAL */  // the halves of the doubled vectors a rotation does not take
  logic [2*NB*256-1:0] wrot2;
  logic [2*NB*16-1:0]  mrot2;
  /* verilator lint_on UNUSEDSIGNAL */
  assign wrot2 = {(NB*256)'(wdata), (NB*256)'(wdata)} << (int'(wsh) * 256);
  assign mrot2 = {(NB*16)'(wmask), (NB*16)'(wmask)} << (int'(wsh) * 16);
  assign wrot = wrot2[2*NB*256-1 -: NB*256];
  assign mrot = mrot2[2*NB*16-1 -: NB*16];

  logic [NB*256-1:0] bank_q;     // bank order
  for (genvar b = 0; b < NB; b++) begin : g_bank
    logic [255:0] mem [D];
    logic [LA-1:0] wl, rl;
    assign wl = wline + LA'((b - int'(wsh)) & (NB - 1));
    assign rl = rline + LA'((b - int'(rsh)) & (NB - 1));
    always_ff @(posedge clk) begin
      if (we)
        for (int e = 0; e < 16; e++)
          if (mrot[16*b + e]) mem[DA'(wl >> BA)][16*e +: 16] <= wrot[256*b + 16*e +: 16];
      if (re) bank_q[256*b +: 256] <= mem[DA'(rl >> BA)];
    end
  end

  // back to window order
  logic [BA-1:0] rsh_q;
  always_ff @(posedge clk) if (re) rsh_q <= rsh;
  /* verilator lint_off UNUSEDSIGNAL */
  logic [2*NB*256-1:0] rrot2;
  /* verilator lint_on UNUSEDSIGNAL */
  assign rrot2 = {bank_q, bank_q} >> (int'(rsh_q) * 256);
  assign rdata = rrot2[NB*256-1:0];
endmodule
