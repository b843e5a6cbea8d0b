// mat_packer: output packer of the attention matrix engine (mat_engine.sv; doc/isa.md 6: scores [H,M,L]
// fp32/fp16, attention output [M,H,D] fp16; 9: mat_qk / mat_pv `out`).
// Computes nothing: it turns a stream of result entries (up to NV values of 4 or 2 bytes each, the
// values of an entry contiguous in memory) into full PORT_BYTES write beats. An entry may start a new
// run at a 32-byte aligned address; an entry whose run address equals the next byte of the current run
// just continues it (no partial beat). Values pack little-endian from the run address; a beat is written
// when it is full, when a new run starts elsewhere, with the last entry (in_last), or on `flush`; partial
// beats carry byte strobes.
// Cycle behaviour: one entry per cycle (in_ready low while the write FIFO is full and the entry would
// complete a beat, and for one cycle when a new run forces out a partial beat); beats leave through a
// 4-deep FIFO (bypassed when it is empty: a beat made in a cycle is offered on the port in that cycle),
// one per wr_ready cycle. idle: no partial beat pending and every beat accepted (the last
// one at the latest in this cycle).
module mat_packer import dlavm_pkg::*; #(
  parameter int NV = 8
) (
  input  logic                        clk,
  input  logic                        rst_n,
  input  logic                        clear,          // start of an instruction: drop all state
  input  logic                        in_valid,
  output logic                        in_ready,
  input  logic [NV*32-1:0]            in_vals,        // value i in bits [32i +: 32]; fp16 in the low half
  input  logic [$clog2(NV+1)-1:0]     in_n,           // values in this entry (1..NV)
  input  logic                        in_fp32,        // 4-byte values (else 2-byte)
  input  logic                        in_new_run,
  input  logic                        in_last,        // the instruction's last entry: write its beat at once
  input  logic [MEM_AW-1:0]           in_run_addr,    // 32-byte aligned
  input  logic                        flush,          // write out the pending partial beat
  output logic                        idle,
  output logic                        wr_valid,
  input  logic                        wr_ready,
  output logic [MEM_AW-1:0]           wr_addr,
  output logic [PORT_BITS-1:0]        wr_data,
  output logic [PORT_BYTES-1:0]       wr_strb
);
  localparam int PB = PORT_BYTES;
  localparam int OW = $clog2(PB) + 1;          // byte offset inside the 2-beat window
  localparam int NB = NV * 4;                  // bytes of one entry at most
  localparam int FW = MEM_AW + PORT_BITS + PORT_BYTES;

  logic [PB*8-1:0]   buf_q;                    // the beat being filled (bytes below off_q)
  logic [PB-1:0]     stb_q;
  logic [MEM_AW-1:0] wb_q;                     // address of byte 0 of the beat
  logic [OW-1:0]     off_q;                    // next byte offset in the beat (< PB)

  // write FIFO
  logic          f_req, f_push, f_pop, f_empty, f_full;
  logic [FW-1:0] f_din, f_dout;
  logic [2:0]    f_count;

  // entry bytes
  logic [NB*8-1:0] vb;
  logic [NB-1:0]   vm;
  logic [OW-1:0]   nbytes;
  always_comb begin
    vb = '0;
    vm = '0;
    for (int i = 0; i < NV; i++) begin
      if (i < int'(in_n)) begin     // values past in_n are zeroed: the beat buffer is built by OR
        if (in_fp32) begin
          vb[32*i +: 32] = in_vals[32*i +: 32];
          vm[4*i +: 4]   = 4'hF;
        end else begin
          vb[16*i +: 16] = in_vals[32*i +: 16];
          vm[2*i +: 2]   = 2'h3;
        end
      end
    end
    nbytes = in_fp32 ? OW'({in_n, 2'b00}) : OW'({in_n, 1'b0});
  end

  logic              pending;
  logic [MEM_AW-1:0] next_addr;
  logic              cont;          // the entry continues the current run
  logic              need_flush;    // a new run elsewhere while a partial beat is pending
  logic [PB*8-1:0]   vbw, nlo, nhi; // the entry placed at off: bytes below PB (nlo) and past it (nhi)
  logic [PB-1:0]     vmw, slo, shi;
  logic [OW:0]       noff;
  logic              emit_full;
  logic [MEM_AW-1:0] base_eff;
  logic [OW-1:0]     off_eff;

  assign pending   = |stb_q;
  assign next_addr = wb_q + MEM_AW'(off_q);
  assign cont      = !in_new_run || (in_run_addr == next_addr);
  assign need_flush = in_valid && !cont && pending;

  always_comb begin
    base_eff = cont ? wb_q : in_run_addr;
    off_eff  = cont ? off_q : '0;
    vbw = (PB*8)'(vb);
    vmw = PB'(vm);
    nlo = (cont ? buf_q : '0) | (vbw << (8 * int'(off_eff)));
    slo = (cont ? stb_q : '0) | (vmw << int'(off_eff));
    nhi = (off_eff == '0) ? '0 : vbw >> (8 * (PB - int'(off_eff)));
    shi = (off_eff == '0) ? '0 : vmw >> (PB - int'(off_eff));
    noff = (OW+1)'(off_eff) + (OW+1)'(nbytes);
    emit_full = (noff >= (OW+1)'(PB));
  end

  assign in_ready = !need_flush && (!(emit_full || in_last) || !f_full);

  always_comb begin
    f_req = 1'b0;
    f_din = {wb_q, buf_q, stb_q};
    if (need_flush || (!in_valid && flush && pending)) begin
      f_req = !f_full;
    end else if (in_valid && (emit_full || in_last)) begin
      f_req = !f_full;
      f_din = {base_eff, nlo, slo};
    end
  end
  // a beat made while the FIFO is empty goes straight to the port (stored only if the port is not ready)
  assign f_push = f_req && !(f_empty && wr_ready);

  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      buf_q <= '0; stb_q <= '0; wb_q <= '0; off_q <= '0;
    end else if (clear) begin
      buf_q <= '0; stb_q <= '0; wb_q <= '0; off_q <= '0;
    end else if (need_flush || (!in_valid && flush && pending)) begin
      if (!f_full) begin
        buf_q <= '0; stb_q <= '0;
        wb_q  <= wb_q + MEM_AW'(PB);   // any value: the next entry starts a new run
        off_q <= '0;
      end
    end else if (in_valid && in_ready) begin
      if (emit_full) begin
        buf_q <= nhi;
        stb_q <= shi;
        wb_q  <= base_eff + MEM_AW'(PB);
        off_q <= OW'(noff - (OW+1)'(PB));
      end else if (in_last) begin    // the partial beat went out with the entry
        buf_q <= '0;
        stb_q <= '0;
        wb_q  <= base_eff + MEM_AW'(PB);
        off_q <= '0;
      end else begin
        buf_q <= nlo;
        stb_q <= slo;
        wb_q  <= base_eff;
        off_q <= OW'(noff);
      end
    end
  end

  mat_fifo #(.W(FW), .DEPTH(4)) u_wfifo (
    .clk, .rst_n, .clear, .push(f_push), .din(f_din), .pop(f_pop), .dout(f_dout),
    .empty(f_empty), .full(f_full), .count(f_count)
  );

  logic [FW-1:0] w_out;
  assign w_out    = f_empty ? f_din : f_dout;
  assign wr_valid = !f_empty || f_req;
  assign f_pop    = !f_empty && wr_ready;
  assign wr_addr  = w_out[FW-1 -: MEM_AW];
  assign wr_data  = w_out[PORT_BYTES +: PORT_BITS];
  assign wr_strb  = w_out[PORT_BYTES-1:0];
  // (the last beat leaving in this cycle counts: it is committed at the edge that ends the cycle)
  assign idle     = (!pending || (in_valid && in_ready && in_last && !(emit_full && |shi)))
                 && ((f_count == 3'd0) ? (!f_req || wr_ready) : (f_count == 3'd1 && f_pop && !f_req));
endmodule
