import torch, time
from torch._higher_order_ops import associative_scan
from rnnbench.scan import linear_scan
torch.manual_seed(0); torch.set_num_threads(1)
def combine(e1, e2):  # e1 earlier, e2 later
    A1,b1=e1; A2,b2=e2
    return (A2@A1, (A2@b1.unsqueeze(-1)).squeeze(-1)+b2)
def hop(A,b):
    return associative_scan(combine,(A,b),dim=0,combine_mode="generic")[1]
def hillis(A,b):
    A=A.clone(); b=b.clone(); s=1; T=b.shape[0]
    while s<T:
        b2=torch.matmul(A[s:],b[:-s].unsqueeze(-1)).squeeze(-1)+b[s:]
        A2=A[s:]@A[:-s]
        b=torch.cat([b[:s],b2]); A=torch.cat([A[:s],A2]); s*=2
    return b
for T,H in ((1024,8),(1024,32),(16384,8)):
    A=torch.randn(T,1,H,H,dtype=torch.float64)*0.3/H**.5; b=torch.randn(T,1,H,dtype=torch.float64)
    ref=linear_scan(A,b)
    for name,f in (("blelloch",linear_scan),("hillis",hillis),("hop",hop)):
        try:
            out=f(A,b); err=(out-ref).abs().max().item()
            t=time.perf_counter(); n=0
            while time.perf_counter()-t<1.0: f(A,b); n+=1
            print(T,H,name,f"{(time.perf_counter()-t)/n*1e3:.2f} ms err {err:.1e}",flush=True)
        except Exception as e: print(name,"fails",type(e).__name__,str(e)[:200])
