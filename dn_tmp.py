import torch, time, sys
from rnnbench.scan import linear_scan
torch.set_num_threads(1)
T,H=65536,32
A=(torch.rand(T,1,H,dtype=torch.float64)*0.2); b=torch.randn(T,1,H,dtype=torch.float64)
for fl in (False,True,False):
    torch.set_flush_denormal(fl)
    t=time.perf_counter(); linear_scan(A,b); print(fl, time.perf_counter()-t, flush=True)
