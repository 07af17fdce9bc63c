import sharp from 'sharp';
import { readFileSync } from 'node:fs';
const jpg = readFileSync('../shared/images/cafe.jpg');
const png = readFileSync('../shared/images/cup.png');
const webp = await sharp(png).webp().toBuffer();
const gif = await sharp(png).gif().toBuffer();
const tiff = await sharp(png).tiff().toBuffer();
const avif = await sharp(png).resize(64).avif().toBuffer().catch(e=>{console.log('avif enc',e.message); return null;});
const tries = {
  junk: Buffer.from('hello world this is not an image'),
  empty: Buffer.alloc(0),
  jpgTrunc: jpg.subarray(0, jpg.length>>1),
  pngTrunc: png.subarray(0, png.length>>1),
  webpTrunc: webp.subarray(0, webp.length>>1),
  gifTrunc: gif.subarray(0, gif.length>>1),
  tiffTrunc: tiff.subarray(0, tiff.length>>1),
  jpgHeaderOnly: jpg.subarray(0, 20),
};
if (avif) tries.avifTrunc = avif.subarray(0, avif.length>>1);
for (const failOn of ['warning','truncated','error']) {
  for (const [k,b] of Object.entries(tries)) {
    try { const m = await sharp(b,{failOn}).metadata(); 
      try { await sharp(b,{failOn}).raw().toBuffer(); console.log(failOn,k,'OK', m.format, m.width); } catch(e) { console.log(failOn,k,'DECODE ERR', m.format, JSON.stringify(e.message)); }
    } catch (e) { console.log(failOn,k,'META ERR', JSON.stringify(e.message)); }
  }
}
console.log(await sharp(avif).metadata().then(m=>m.format));
const gray = await sharp({create:{width:4,height:3,channels:3,background:'#808080'}}).greyscale().png().toBuffer();
const gm = await sharp(gray).metadata(); console.log('gray', gm.channels, gm.space);
const g1 = await sharp(gray).toColourspace('srgb').raw().toBuffer({resolveWithObject:true}); console.log(g1.info, [...g1.data.subarray(0,6)]);
const g2 = await sharp(gray).raw().toBuffer({resolveWithObject:true}); console.log(g2.info.channels);
