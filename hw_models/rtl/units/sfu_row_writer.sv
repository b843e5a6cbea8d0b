// sfu_row_writer: the output side shared by sfu_norm and sfu_softmax (their private helper).
// Takes the fp16 results as one contiguous element stream (push: n = 1..L elements in lanes 0..n-1, in
// element order over the whole [rows, cols] output) into a FIFO of FD entries, packs them into beats of
// PORT_BYTES at dst + k*PORT_BYTES and writes each full beat (all strobes) and, at the end, the last partial
// beat with the strobes of its elements only. The producer must not push into a full FIFO (count is the
// number of entries held). Cycle behaviour: one FIFO entry packed per cycle while the write register is free;
// idle: total elements packed and every beat accepted by the memory.
module sfu_row_writer import dlavm_pkg::*; #(
  parameter int FD = 16
) (
  input  logic                       clk, rst_n,
  input  logic                       go,               // pulse: start (dst, total stay stable)
  input  logic [MEM_AW-1:0]          dst_addr,
  input  logic [63:0]                total,            // elements to write (> 0)
  input  logic                       push,
  input  logic [$clog2(SFU_LANES):0] push_n,
  input  logic [SFU_LANES*16-1:0]    push_data,
  output logic [$clog2(FD):0]        count,
  output logic                       wr_valid,
  input  logic                       wr_ready,
  output logic [MEM_AW-1:0]          wr_addr,
  output logic [PORT_BITS-1:0]       wr_data,
  output logic [PORT_BYTES-1:0]      wr_strb,
  output logic                       idle
);
  localparam int L  = SFU_LANES;
  localparam int LB = $clog2(L);
  localparam int E  = PORT_BYTES / 2;                  // fp16 elements per beat
  localparam int GO = E / L;                           // groups per beat
  localparam int EB = $clog2(E);
  localparam int FB = $clog2(FD);

  // ---- FIFO
  logic [L*16-1:0] f_data [FD];
  logic [LB:0]     f_n    [FD];
  logic [FB-1:0]   rp, wp;
  logic [FB:0]     cnt;
  logic            pop;
  assign count = cnt;
  always_ff @(posedge clk) begin
    if (push) begin f_data[wp] <= push_data; f_n[wp] <= push_n; end
  end

  // ---- packer
  logic [PORT_BITS-1:0] pend, pend_new, ovf;
  logic [EB-1:0]        k;              // elements held in pend
  logic [63:0]          packed_n;
  logic [MEM_AW-1:0]    baddr;
  logic                 out_free, complete, flush;
  logic [EB:0]          k_sum;
  assign out_free = !wr_valid || wr_ready;
  assign pop      = (cnt != 0) && out_free;
  assign k_sum    = {1'b0, k} + (EB+1)'(f_n[rp]);
  assign complete = pop && (k_sum >= (EB+1)'(E));
  assign flush    = !pop && (cnt == 0) && (packed_n == total) && (k != 0) && out_free;

  // place the n popped elements at positions k .. k+n-1 (those >= E go to the next beat's start)
  always_comb begin
    logic [LB-1:0] rot;
    logic [EB-1:0] g;
    logic [2*L*16-1:0] win;
    logic [2*L-1:0]    winv;
    rot = k[LB-1:0];
    g   = k >> LB;
    win = '0; winv = '0;
    for (int i = 0; i < L; i++) begin
      if (i < 32'(f_n[rp])) begin
        win[16*(32'(rot) + i) +: 16] = f_data[rp][16*i +: 16];
        winv[32'(rot) + i] = 1'b1;
      end
    end
    pend_new = pend;
    ovf = '0;
    for (int l = 0; l < L; l++) begin
      if (winv[l]) pend_new[16*(32'(g) * L + l) +: 16] = win[16*l +: 16];
      if (winv[L + l]) begin
        if (32'(g) + 1 < GO) pend_new[16*((32'(g) + 1) * L + l) +: 16] = win[16*(L + l) +: 16];
        else ovf[16*l +: 16] = win[16*(L + l) +: 16];
      end
    end
  end

  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      rp <= '0; wp <= '0; cnt <= '0; pend <= '0; k <= '0; packed_n <= '0; baddr <= '0;
      wr_valid <= 1'b0; wr_addr <= '0; wr_data <= '0; wr_strb <= '0;
    end else if (go) begin
      rp <= '0; wp <= '0; cnt <= '0; k <= '0; packed_n <= '0; baddr <= dst_addr; wr_valid <= 1'b0;
    end else begin
      if (push) wp <= wp + FB'(1);
      if (pop)  rp <= rp + FB'(1);
      cnt <= cnt + (FB+1)'(push) - (FB+1)'(pop);
      if (wr_valid && wr_ready) wr_valid <= 1'b0;
      if (pop) begin
        packed_n <= packed_n + 64'(f_n[rp]);
        if (complete) begin
          wr_valid <= 1'b1; wr_addr <= baddr; wr_data <= pend_new; wr_strb <= '1;
          baddr <= baddr + MEM_AW'(PORT_BYTES);
          pend <= ovf;
          k <= EB'(k_sum - (EB+1)'(E));
        end else begin
          pend <= pend_new;
          k <= k_sum[EB-1:0];
        end
      end else if (flush) begin
        wr_valid <= 1'b1; wr_addr <= baddr; wr_data <= pend;
        for (int j = 0; j < E; j++) wr_strb[2*j +: 2] <= (j < 32'(k)) ? 2'b11 : 2'b00;
        baddr <= baddr + MEM_AW'(PORT_BYTES);
        k <= '0;
      end
    end
  end
  assign idle = (cnt == 0) && (packed_n == total) && (k == 0) && !wr_valid;
endmodule

