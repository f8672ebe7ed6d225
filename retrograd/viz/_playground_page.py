"""The playground's page: one HTML file, its CSS and vanilla-JS inline, the data as JSON.

The CSP forbids every fetch (default-src 'none'): the page works offline and a test can
tell that it asks for nothing. The script reads only elements under its own root.
"""
import html
import json

CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"

CSS = """
body{font:14px system-ui,sans-serif;margin:12px;color:#222;background:#fff}
h1{font-size:16px;margin:0 0 4px} .about{color:#555;margin:0 0 8px;font-size:12px}
.bar{display:flex;gap:6px;align-items:center;flex-wrap:wrap;margin:6px 0}
.bar button{padding:3px 10px} .phase{font-weight:600;min-width:280px}
.main{display:flex;gap:12px;flex-wrap:wrap} svg{background:#fafafa;border:1px solid #ddd}
.unit circle,.unit rect{stroke:#333;stroke-width:1.5} .unit text{font-size:11px;text-anchor:middle;pointer-events:none}
.item{cursor:pointer;outline:none} .item:focus circle,.item:focus rect,.item.sel circle{stroke:#f80;stroke-width:3}
.edge line{stroke-linecap:round} .edge:focus line,.edge.sel line{stroke:#f80 !important}
.panel{white-space:pre-wrap;font:12px ui-monospace,monospace;background:#f4f4f4;padding:8px;min-height:90px;max-width:1100px;border:1px solid #ddd}
.side{display:flex;flex-direction:column;gap:8px} .cap{font-size:11px;color:#555;max-width:300px}
"""

BODY = """
<div class="rg-playground">
<h1 class="title"></h1><div class="about"></div>
<div class="bar"><button class="play" type="button">play</button>
<button class="prevphase" type="button">◀ phase</button><button class="nextphase" type="button">phase ▶</button>
<button class="nextstep" type="button">step ▶▶</button>
<label>phase <select class="phasesel"></select></label>
<label>step <input class="stepsel" type="range" min="0" value="0"></label><span class="stepno"></span>
<label>speed <input class="speed" type="range" min="1" max="10" value="3"></label>
<label class="patlab">pattern <select class="patsel"></select></label></div>
<div class="bar"><span class="phase"></span><span class="loss"></span></div>
<div class="main"><svg class="net" width="640" height="420" role="img"></svg>
<div class="side"><svg class="curve" width="300" height="150"></svg>
<svg class="land" width="300" height="300"></svg><div class="cap"></div></div></div>
<div class="panel" aria-live="polite">hover, click or focus (Tab) a unit or a weight to see its numbers</div>
</div>
"""

SCRIPT = r"""
(function(){
const root=document.currentScript.previousElementSibling.previousElementSibling;
const D=JSON.parse(root.nextElementSibling.textContent);
const $=s=>root.querySelector(s), NS='http://www.w3.org/2000/svg';
const el=(tag,attrs,parent)=>{const e=document.createElementNS(NS,tag);for(const k in attrs)e.setAttribute(k,attrs[k]);if(parent)parent.appendChild(e);return e;};
const fmt=v=>{if(!isFinite(v))return String(v);const s=Number(v.toPrecision(4));return String(s);};
const col=v=>v>=0?'#2166ac':'#b2182b';
let step=0,phase=0,pat=0,timer=null,selected=null;
$('.title').textContent=D.title; $('.about').textContent=(D.about||[]).join('\n');
D.phases.forEach((p,i)=>{const o=document.createElement('option');o.value=i;o.textContent=p.name;$('.phasesel').appendChild(o);});
const nsteps=D.kind==='network'?D.steps.length:1;
$('.stepsel').max=nsteps-1;
const svg=$('.net'), items={};
function item(g,id){g.setAttribute('tabindex','0');g.setAttribute('data-id',id);g.classList.add('item');
  const show=()=>{selected=id;root.querySelectorAll('.sel').forEach(e=>e.classList.remove('sel'));g.classList.add('sel');panel();};
  g.addEventListener('mouseenter',show);g.addEventListener('click',show);g.addEventListener('focus',show);items[id]=g;return g;}
// ------------------------------------------------------------ network
function buildNet(){
  const S=D.sizes,L=S.length-1,W=640,H=Math.max(420,48*(Math.max(...S)+2)),pos={};
  svg.setAttribute('height',H);
  const x=l=>50+l*(W-100)/L, y=(l,n)=>(n+1)*H/(S[l]+1+(l<L?1:0));
  for(let l=0;l<=L;l++)for(let n=0;n<S[l];n++)pos['u-'+l+'-'+n]=[x(l),y(l,n)];
  for(let l=0;l<L;l++)pos['bu-'+l]=[x(l),y(l,S[l])];
  const eg=el('g',{},svg),ug=el('g',{},svg);
  for(let l=0;l<L;l++)for(let t=0;t<S[l+1];t++){
    const ends=[];for(let u=0;u<S[l];u++)ends.push(['w-'+l+'-'+u+'-'+t,'u-'+l+'-'+u]);ends.push(['b-'+l+'-'+t,'bu-'+l]);
    for(const [id,from] of ends){const g=item(el('g',{class:'edge'},eg),id),[x1,y1]=pos[from],[x2,y2]=pos['u-'+(l+1)+'-'+t];
      el('line',{x1:x1,y1:y1,x2:x2,y2:y2,'stroke-dasharray':id[0]==='b'?'4 3':''},g);el('line',{x1:x1,y1:y1,x2:x2,y2:y2,stroke:'transparent','stroke-width':10},g);}}
  for(const id in pos){const [cx,cy]=pos[id],g=item(el('g',{class:'unit'},ug),id);
    if(id[0]==='b'){el('rect',{x:cx-11,y:cy-11,width:22,height:22,fill:'#eee'},g);el('text',{x:cx,y:cy+4},g).textContent='1';continue;}
    const p=id.split('-'),r=S.reduce((a,b)=>a+b,0)>20?15:22;
    el('circle',{cx:cx,cy:cy,r:r,fill:'#fff'},g);el('text',{x:cx,y:cy+4,class:'name'},g).textContent=D.letters[+p[1]]+(+p[2]+1);
    el('text',{x:cx,y:cy+r+13,class:'val'},g);}
}
function curP(){const s=D.steps[step];return s.pats[Math.min(pat,s.pats.length-1)];}
function drawNet(){
  const s=D.steps[step],P=curP(),ph=D.phases[phase],S=D.sizes,L=S.length-1;
  const back=ph.kind==='grad'||(ph.kind==='delta');
  // which deltas are known: layers >= ph.layer in a delta phase, all from grad on
  const known=l=>ph.kind==='grad'||ph.kind==='update'||(ph.kind==='delta'&&l>=ph.layer);
  let vmax=1e-12;
  const val=(l,u,t,bias)=>{ if(ph.kind==='update')return bias?s.newb[l][t]:s.newW[l][u][t];
    if(back)return bias?-P.gb[l][t]:-P.gW[l][u][t]; return bias?s.b[l][t]:s.W[l][u][t];};
  for(let l=0;l<L;l++)for(let t=0;t<S[l+1];t++)for(let u=0;u<=S[l];u++)vmax=Math.max(vmax,Math.abs(val(l,u,t,u===S[l])));
  for(let l=0;l<L;l++)for(let t=0;t<S[l+1];t++)for(let u=0;u<=S[l];u++){
    const bias=u===S[l],id=bias?'b-'+l+'-'+t:'w-'+l+'-'+u+'-'+t,v=val(l,u,t,bias),line=items[id].firstChild;
    const on=!back||known(l+1);
    line.setAttribute('stroke',on?col(v):'#ccc');line.setAttribute('stroke-width',on?(0.5+6*Math.abs(v)/vmax).toFixed(2):1);
    line.setAttribute('data-value',v);}
  for(let l=0;l<=L;l++)for(let n=0;n<S[l];n++){const g=items['u-'+l+'-'+n],t=g.querySelector('.val'),c=g.querySelector('circle');
    let txt='o='+fmt(P.o[l][n]),fill='#fff';
    if(l>0&&ph.kind!=='forward'&&known(l)){const d=P.delta[l-1][n];txt='δ='+fmt(d);fill=d>=0?'#d1e5f0':'#fddbc7';t.setAttribute('data-delta',d);}
    else t.removeAttribute('data-delta');
    t.textContent=txt;c.setAttribute('fill',fill);}
  $('.loss').textContent='E = '+fmt(s.E)+(ph.kind==='update'?'  →  after the update '+s.after:'')+'   '+(P.ok?'✓ every gradient agrees with autodiff':'✗ a gradient disagrees with autodiff');
}
function netPanel(){
  const P=curP(),s=D.steps[step],lines=(P.lines[selected]||[]).filter(a=>a[0]<=phase).map(a=>a[1]);
  const k=D.phases[phase].kind;
  if((k==='grad'||k==='update')&&s.sums[selected])lines.push(s.sums[selected]+'   (this pattern and the other '+(s.pats.length-1)+')');
  if(k==='update'&&s.update[selected])lines.push(s.update[selected]);
  if(selected&&selected.startsWith('bu-'))lines.push('the bias unit: o = 1 always, so ∂E/∂b(t) = −δ_t·1');
  return lines.join('\n')||'(nothing yet in this phase)';
}
// ------------------------------------------------------------ expression
function buildExpr(){
  const N=D.nodes,depth={},pos={};
  N.forEach(n=>{depth[n.i]=n.args.length?1+Math.max(...n.args.map(a=>depth[a])):0;});
  const maxd=Math.max(...Object.values(depth)),cols={};
  N.forEach(n=>{(cols[depth[n.i]]=cols[depth[n.i]]||[]).push(n.i);});
  for(const d in cols)cols[d].forEach((i,k)=>{pos[i]=[60+d*(520/Math.max(maxd,1)),(k+1)*420/(cols[d].length+1)];});
  const eg=el('g',{},svg),ug=el('g',{},svg);
  N.forEach(n=>n.edges.forEach(([k,v])=>{const id='e-'+n.i+'-'+k,g=item(el('g',{class:'edge'},eg),id),[x1,y1]=pos[n.i],[x2,y2]=pos[k];
    el('line',{x1:x1,y1:y1,x2:x2,y2:y2,stroke:'#999','stroke-width':2},g);el('line',{x1:x1,y1:y1,x2:x2,y2:y2,stroke:'transparent','stroke-width':10},g);}));
  N.forEach(n=>{const g=item(el('g',{class:'unit'},ug),'n-'+n.i),[cx,cy]=pos[n.i];
    el('circle',{cx:cx,cy:cy,r:24,fill:'#fff'},g);el('text',{x:cx,y:cy+4,class:'name'},g).textContent='w'+n.i;el('text',{x:cx,y:cy+38,class:'val'},g);});
}
function drawExpr(){
  const ph=D.phases[phase],N=D.nodes,n=N.length;
  N.forEach((nd,k)=>{const g=items['n-'+nd.i],t=g.querySelector('.val'),c=g.querySelector('circle');
    const fwd=ph.kind!=='forward'||nd.i<=ph.node, adj=ph.kind==='check'||(ph.kind==='adjoint'&&nd.i>=ph.node);
    t.textContent=adj?'w̄='+fmt(nd.bar):(fwd?fmt(nd.value):'');c.setAttribute('fill',adj?'#fddbc7':(fwd?'#d1e5f0':'#fff'));
    if(adj)t.setAttribute('data-bar',nd.bar);else t.removeAttribute('data-bar');
    nd.edges.forEach(([kk,v])=>{const line=items['e-'+nd.i+'-'+kk].firstChild,on=ph.kind!=='forward'&&(ph.kind==='check'||kk>=ph.node);
      line.setAttribute('stroke',on?col(v):'#999');line.setAttribute('stroke-width',on?2+Math.min(6,Math.abs(v)):2);});});
  $('.loss').textContent='f = '+fmt(N[D.f-1].value);
}
function exprPanel(){
  const ph=D.phases[phase];if(!selected)return '';
  if(selected.startsWith('e-')){const [_,i,k]=selected.split('-'),nd=D.nodes[i-1],e=nd.edges.find(a=>a[0]==+k);
    return 'w'+k+' uses w'+i+': '+e[2]+(ph.kind!=='forward'&&(ph.kind==='check'||+k>=ph.node)?'\nits share of w̄'+i+': w̄'+k+'·∂w'+k+'/∂w'+i+' = '+fmt(D.nodes[k-1].bar*e[1]):'');}
  const nd=D.nodes[+selected.slice(2)-1],lines=[];
  if(ph.kind!=='forward'||nd.i<=ph.node)lines.push(nd.forward);
  if(ph.kind==='check'||(ph.kind==='adjoint'&&nd.i>=ph.node))lines.push(nd.adjoint);
  if(ph.kind==='check'&&nd.check)lines.push(nd.check);
  return lines.join('\n')||'(not computed yet in this phase)';
}
// ------------------------------------------------------------ curve and landscape
function buildSide(){
  const c=$('.curve'),ls=D.loss||[];
  if(D.kind!=='network'){c.style.display='none';$('.land').style.display='none';return;}
  const mx=Math.max(...ls),mn=Math.min(...ls),X=i=>30+i*260/Math.max(ls.length-1,1),Y=v=>130-110*(v-mn)/Math.max(mx-mn,1e-12);
  el('polyline',{points:ls.map((v,i)=>X(i)+','+Y(v)).join(' '),fill:'none',stroke:'#333'},c);
  el('text',{x:30,y:14,'font-size':11},c).textContent=(D.npatterns>1?'Σ_p E_p ('+D.npatterns+' patterns): ':'loss E per step: ')+fmt(ls[0])+' → '+fmt(ls[ls.length-1]);
  el('circle',{r:4,fill:'#f80',class:'cur'},c);c._X=X;c._Y=Y;
  const Ld=D.landscape,g=$('.land');if(!Ld){g.style.display='none';return;}
  const n=Ld.A.length,z=Ld.Z.flat(),zmin=Math.min(...z),zmax=Math.max(...z),cs=260/n;
  for(let i=0;i<n;i++)for(let j=0;j<n;j++){const q=(Ld.Z[i][j]-zmin)/Math.max(zmax-zmin,1e-12);
    el('rect',{x:30+j*cs,y:270-(i+1)*cs,width:cs+0.5,height:cs+0.5,fill:'rgb('+Math.round(255-120*q)+','+Math.round(255-200*q)+','+Math.round(140+100*(1-q))+')'},g);}
  const a0=Ld.A[0],a1=Ld.A[n-1],b0=Ld.B[0],b1=Ld.B[n-1],PX=v=>30+260*(v-a0)/(a1-a0),PY=v=>270-260*(v-b0)/(b1-b0);
  el('polyline',{points:Ld.path[0].map((v,i)=>PX(v)+','+PY(Ld.path[1][i])).join(' '),fill:'none',stroke:'#000','stroke-width':1.5},g);
  el('circle',{r:4,fill:'#f80',class:'cur'},g);g._X=PX;g._Y=PY;
  el('text',{x:30,y:290,'font-size':11},g).textContent='x: '+Ld.a+'   y: '+Ld.b;
  $('.cap').textContent='the loss landscape over '+Ld.a+' and '+Ld.b+' (darker = higher E, every other weight at its step-1 value) and their path during training';
}
function drawSide(){
  if(D.kind!=='network')return;
  const c=$('.curve'),k=step+(D.phases[phase].kind==='update'?1:0),m=c.querySelector('.cur');
  m.setAttribute('cx',c._X(k));m.setAttribute('cy',c._Y(D.loss[k]));
  const g=$('.land'),Ld=D.landscape;if(!Ld)return;const p=g.querySelector('.cur');
  p.setAttribute('cx',g._X(Ld.path[0][k]));p.setAttribute('cy',g._Y(Ld.path[1][k]));
}
// ------------------------------------------------------------ controls
function panel(){$('.panel').textContent=D.kind==='network'?netPanel():exprPanel();}
function draw(){ $('.phasesel').value=phase;$('.stepsel').value=step;
  $('.stepno').textContent=(step+1)+' / '+nsteps;$('.phase').textContent=D.phases[phase].name;
  if(D.kind==='network'){const ps=D.steps[step].pats;$('.patsel').innerHTML='';
    ps.forEach((p,i)=>{const o=document.createElement('option');o.value=i;o.textContent='x=('+p.x.join(', ')+') d=('+p.d.join(', ')+')';$('.patsel').appendChild(o);});
    $('.patsel').value=Math.min(pat,ps.length-1);drawNet();}else drawExpr();
  drawSide(); if(selected)panel(); root.setAttribute('data-step',step);root.setAttribute('data-phase',phase);}
function go(dp){phase+=dp;if(phase>=D.phases.length){phase=0;step=(step+1)%nsteps;}if(phase<0){phase=D.phases.length-1;step=(step-1+nsteps)%nsteps;}draw();}
$('.nextphase').onclick=()=>go(1);$('.prevphase').onclick=()=>go(-1);
$('.nextstep').onclick=()=>{step=(step+1)%nsteps;phase=0;draw();};
$('.phasesel').onchange=e=>{phase=+e.target.value;draw();};
$('.stepsel').oninput=e=>{step=+e.target.value;draw();};
$('.patsel').onchange=e=>{pat=+e.target.value;draw();};
const tick=()=>{go(1);timer=setTimeout(tick,1600/(+$('.speed').value));};
// the keyboard: ← → step through the phases, space plays (not while a control has focus)
root.addEventListener('keydown',e=>{if(/SELECT|INPUT|BUTTON/.test(e.target.tagName))return;
  if(e.key==='ArrowRight'){go(1);e.preventDefault();}else if(e.key==='ArrowLeft'){go(-1);e.preventDefault();}
  else if(e.key===' '){$('.play').click();e.preventDefault();}});
$('.play').onclick=()=>{if(timer){clearTimeout(timer);timer=null;$('.play').textContent='play';}else{$('.play').textContent='pause';tick();}};
if(D.kind==='network'){buildNet();if(D.steps[0].pats.length<2)$('.patlab').style.display='none';}else{buildExpr();$('.nextstep').style.display='none';$('.stepsel').style.display='none';$('.patlab').style.display='none';}
buildSide();draw();root.setAttribute('data-ready','1');
})();
"""


def render(data: dict) -> str:
    """The page for a recorded run (``Playground.data``)."""
    # "<" as \\u003c: no "</script>" can end the data block early
    blob = json.dumps(data, ensure_ascii=False, allow_nan=False).replace("<", "\\u003c")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<title>{html.escape(data["title"])}</title>\n<style>{CSS}</style></head><body>'
            f'{BODY}<script type="application/json">{blob}</script>\n'
            f'<script>{SCRIPT}</script>\n</body></html>\n')
